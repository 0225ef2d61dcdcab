"""dementia-cgan runtime: stage-conditioned brain-MRI slice generation on ONNX Runtime, without torch.

For research and education only; never for diagnosis.
"""

from .api import OnnxGenerator, load
from .contract import DISCLAIMER, OASIS_FOLDERS, STAGE_NAMES, ModelInfo, read_metadata
from .dataset import GeneratedDataset
from .errors import CganError, ModelError, StageError

__version__ = "0.1.0"

__all__ = [
    "CganError",
    "DISCLAIMER",
    "GeneratedDataset",
    "ModelError",
    "ModelInfo",
    "OnnxGenerator",
    "OASIS_FOLDERS",
    "STAGE_NAMES",
    "StageError",
    "__version__",
    "load",
    "read_metadata",
]
