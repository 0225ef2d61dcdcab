"""``cgan-web``: a static browser page that runs a dementia-cgan model with onnxruntime-web.

``build_site`` writes the folder (page, model, site.json, onnxruntime-web or a pinned CDN URL);
``make_server`` serves one on localhost with the cross-origin-isolation headers wasm threads need.
Torch-free, like the rest of the runtime.
"""

from .site import ORT_CDN, ORT_VERSION, BuildResult, WebError, build_site
from .server import make_server

__all__ = ["ORT_CDN", "ORT_VERSION", "BuildResult", "WebError", "build_site", "make_server"]
