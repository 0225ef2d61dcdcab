"""Which model file to use: ``--model`` (a path or ``hf:OWNER/REPO[/FILE]``), the last export, or the embedded default.

Resolution order:

1. ``model`` given: a local ``.onnx`` path, or ``hf:OWNER/REPO[@REVISION][/FILE]`` fetched through
   huggingface_hub (default FILE ``cDCGAN_generator.onnx``). The library's own cache and settings
   apply unchanged: ``HF_HOME``, ``HF_HUB_CACHE``, ``HF_HUB_OFFLINE``, ``HF_TOKEN``.
2. ``model_output/cDCGAN_generator.onnx`` under the working directory (what ``cgan-export`` writes;
   :data:`cgan.runtime.contract.LAST_EXPORT`).
3. The default model shipped inside the package, ``cgan/runtime/assets/default.onnx``.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .contract import LAST_EXPORT, MODEL_FILE
from .errors import ModelError, first_line

EMBEDDED_DEFAULT = Path(__file__).resolve().parent / "assets" / "default.onnx"
HUB_PREFIX = "hf:"
HUB_PROBE_S = 3.0  # seconds to wait for the Hub before using the local cache alone

# hf:OWNER/REPO, optional @REVISION after the repo, optional /FILE (may contain folders).
_HUB_RE = re.compile(r"^(?P<owner>[^/@\s]+)/(?P<repo>[^/@\s]+)(?:@(?P<rev>[^/\s]+))?(?:/(?P<file>\S+))?$")


def one_model(argument: str | None, option: str | None) -> str | None:
    """The model a command was given as its MODEL argument or its ``--model`` option (the same thing, so that
    every command takes both); two different ones are refused."""
    if argument is not None and option is not None and argument != option:
        raise ModelError(f"two models given ({argument} and --model {option}); give one")
    return argument if argument is not None else option


@dataclass(frozen=True)
class ResolvedModel:
    """A model file on local disk and how it was found."""

    path: Path
    kind: str  # "path" | "hub" | "last-export" | "embedded"
    description: str  # for the "model: ..." line, e.g. "hf:owner/repo/file (revision main, cached at ...)"


@dataclass(frozen=True)
class HubSpec:
    repo_id: str
    filename: str = MODEL_FILE
    revision: str | None = None

    def __str__(self) -> str:
        rev = f"@{self.revision}" if self.revision else ""
        return f"{HUB_PREFIX}{self.repo_id}{rev}/{self.filename}"


def parse_hub_spec(text: str) -> HubSpec:
    """``hf:OWNER/REPO[@REVISION][/FILE]`` -> :class:`HubSpec`; a malformed one is a :class:`ModelError`."""
    body = text[len(HUB_PREFIX):] if text.startswith(HUB_PREFIX) else text
    m = _HUB_RE.match(body)
    if not m:
        raise ModelError(
            f"cannot read Hub model {text!r}; expected hf:OWNER/REPO[@REVISION][/FILE], e.g. hf:someone/dementia-cgan/{MODEL_FILE}"
        )
    filename = m["file"] or MODEL_FILE
    if any(part in ("..", ".") for part in filename.split("/")) or ".." in (m["owner"], m["repo"]):
        raise ModelError(f"cannot read Hub model {text!r}: a file or repository name has a '.' or '..' part; "
                         f"name the file inside the repository, e.g. hf:someone/dementia-cgan/{MODEL_FILE}")
    return HubSpec(repo_id=f"{m['owner']}/{m['repo']}", filename=filename, revision=m["rev"])


def resolve_model(
    model: str | os.PathLike | None = None, *, cwd: str | os.PathLike | None = None, log: Callable[[str], object] | None = None
) -> ResolvedModel:
    """Find the model file to use (see the module docstring for the order); raise :class:`ModelError` if none.

    ``log`` hears, before any network wait, that the Hugging Face Hub is being contacted."""
    if model is not None and str(model).startswith(HUB_PREFIX):
        return _from_hub(parse_hub_spec(str(model)), log=log)
    if model is not None:
        path = Path(model).expanduser()
        _check_local(path, "--model")
        return ResolvedModel(path=path, kind="path", description=str(path))
    last = Path(cwd or ".") / LAST_EXPORT
    if last.is_file():
        return ResolvedModel(path=last, kind="last-export", description=f"{last} (last export)")
    if EMBEDDED_DEFAULT.is_file():
        return ResolvedModel(path=EMBEDDED_DEFAULT, kind="embedded", description=f"{EMBEDDED_DEFAULT} (embedded default)")
    raise ModelError(
        f"no model given, no {LAST_EXPORT} here and no embedded default model in this installation; "
        "pass --model PATH.onnx or --model hf:OWNER/REPO, or run `cgan-export` first"
    )


def _check_local(path: Path, what: str) -> None:
    if path.is_symlink() and not path.exists():
        raise ModelError(f"{what} {path} is a symlink to {os.readlink(path)}, which does not exist; give the path of an .onnx file")
    if not path.exists():
        raise ModelError(f"{what} {path} does not exist; give the path of an .onnx file written by cgan-export")
    if path.is_dir():
        raise ModelError(f"{what} {path} is a directory; give the path of an .onnx file (e.g. {path / MODEL_FILE})")
    if not path.is_file():
        raise ModelError(f"{what} {path} is not a regular file (a named pipe or a device); give the path of an .onnx file")
    try:
        os.fsencode(path).decode("utf-8")
    except UnicodeDecodeError:
        raise ModelError(f"{what} {path}: the path is not valid UTF-8, which ONNX Runtime cannot open; rename the file "
                         "(or a folder above it) with UTF-8 characters") from None


def hub_reachable(timeout: float = HUB_PROBE_S) -> bool:
    """Whether the Hub's endpoint (``HF_ENDPOINT``, else huggingface.co) accepts a TCP connection within
    ``timeout`` seconds, name lookup included. Offline, huggingface_hub would retry for half a minute."""
    import socket  # here, not at the top: a local model's start does not pay for the network modules
    import threading
    from urllib.parse import urlsplit

    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy")):
        return True  # through a proxy a direct connection says nothing: leave it to huggingface_hub
    url = urlsplit(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    host, port = url.hostname or "huggingface.co", url.port or (80 if url.scheme == "http" else 443)
    result: list[bool] = []

    def probe() -> None:
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            result.append(True)
        except OSError:
            result.append(False)

    thread = threading.Thread(target=probe, daemon=True)  # getaddrinfo has no timeout of its own
    thread.start()
    thread.join(timeout)
    return bool(result and result[0])


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


def _from_hub(spec: HubSpec, log: Callable[[str], object] | None = None) -> ResolvedModel:
    try:
        from huggingface_hub import hf_hub_download  # local: only Hub users pay for the import
    except ImportError:  # pragma: no cover - a base dependency; only a broken install lacks it
        raise ModelError("huggingface_hub is not installed; `pip install huggingface_hub` to use hf: models") from None
    import logging

    # The library logs every retry of an unreachable Hub as a warning; the outcome is reported here, in one line.
    hub_logger = logging.getLogger("huggingface_hub")
    level = hub_logger.level
    hub_logger.setLevel(logging.ERROR)
    local_only = _offline()
    if not local_only:
        if log is not None:
            log(f"contacting the Hugging Face Hub for {spec} ...")
        local_only = not hub_reachable()  # then the local cache alone, at once
    try:
        local = hf_hub_download(repo_id=spec.repo_id, filename=spec.filename, revision=spec.revision, local_files_only=local_only)
    except Exception as exc:  # huggingface_hub's error classes moved between versions: classify by name
        raise ModelError(_hub_message(spec, exc)) from None
    finally:
        hub_logger.setLevel(level)
    path = Path(local)
    rev = spec.revision or "main"
    return ResolvedModel(path=path, kind="hub", description=f"{spec} (revision {rev}, local copy {path})")


def _hub_message(spec: HubSpec, exc: BaseException) -> str:
    names = {cls.__name__ for cls in type(exc).__mro__}
    detail = first_line(exc)
    if "LocalEntryNotFoundError" in names or "OfflineModeIsEnabled" in names:
        offline = _offline()
        why = "HF_HUB_OFFLINE is set" if offline else "the Hub cannot be reached"
        todo = "unset HF_HUB_OFFLINE to download it" if offline else "connect once to download it"
        return f"cannot get {spec}: {why} and it is not in the local Hugging Face cache ({_cache_dir()}); {todo}, or pass --model PATH.onnx"
    if "GatedRepoError" in names:
        return f"cannot get {spec}: the repository is gated; accept its terms on the Hub and log in (`hf auth login` or HF_TOKEN)"
    if "RepositoryNotFoundError" in names:
        return f"cannot get {spec}: repository {spec.repo_id} was not found on the Hub (or it is private: log in or set HF_TOKEN)"
    if "RevisionNotFoundError" in names:
        return f"cannot get {spec}: revision {spec.revision!r} does not exist in {spec.repo_id}"
    if "EntryNotFoundError" in names:
        return f"cannot get {spec}: {spec.repo_id} has no file {spec.filename!r}; name it as hf:{spec.repo_id}/FILE"
    if "HFValidationError" in names:
        return f"cannot get {spec}: {detail}"
    return f"cannot get {spec} from the Hub ({type(exc).__name__}: {detail})"


def _cache_dir() -> str:
    try:
        from huggingface_hub import constants

        return str(constants.HF_HUB_CACHE)
    except Exception:  # pragma: no cover - only for the message
        return "the Hugging Face cache"

