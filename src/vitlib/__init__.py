"""vitlib: the Vision Transformer of "An Image is Worth 16x16 Words" as typed, composable blocks.

The public API, in three lines:

```python
cfg = vitlib.ViTConfig.from_preset("ViT-B/16", num_classes=3)
model = vitlib.ViT.from_config(cfg)          # or vitlib.create_model("ViT-B/16", num_classes=3)
vitlib.count_parameters(cfg), vitlib.count_flops(cfg)
```

``import vitlib`` loads the model and its blocks only; every other name here (checkpoints,
data, training, inference) is imported on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any, Final

from vitlib._version import __version__
from vitlib.blocks import (
    DropPath,
    LayerScale,
    MLPBlock,
    MultiheadSelfAttentionBlock,
    PatchEmbedding,
    TransformerEncoderBlock,
)
from vitlib.config import SIZES, ViTConfig, list_presets
from vitlib.counting import count_flops, count_parameters
from vitlib.errors import (
    CheckpointError,
    ConfigError,
    DataError,
    InputShapeError,
    InputTypeError,
    MissingExtraError,
    SaveError,
    VitlibError,
)
from vitlib.vit import Intermediates, ViT, create_model

if TYPE_CHECKING:  # what mypy and IDEs see of the names loaded on first use
    from vitlib.checkpoints import (
        AdaptedCheckpointWarning,
        NonFiniteWeightsWarning,
        attach_metadata,
        load_pretrained,
        model_metadata,
        save_pretrained,
    )
    from vitlib.data import Preprocessing
    from vitlib.inference import (
        EvaluationReport,
        Prediction,
        evaluate_model,
        export_onnx,
        extract_features,
        linear_probe,
        optimize_for_inference,
        predict,
    )
    from vitlib.training import History, TrainConfig, fit

#: The names loaded on first use, by the module that defines them.
_LAZY: Final[dict[str, str]] = {
    "load_pretrained": "vitlib.checkpoints",
    "save_pretrained": "vitlib.checkpoints",
    "attach_metadata": "vitlib.checkpoints",
    "model_metadata": "vitlib.checkpoints",
    "AdaptedCheckpointWarning": "vitlib.checkpoints",
    "NonFiniteWeightsWarning": "vitlib.checkpoints",
    "Preprocessing": "vitlib.data",
    "fit": "vitlib.training",
    "TrainConfig": "vitlib.training",
    "History": "vitlib.training",
    "predict": "vitlib.inference",
    "Prediction": "vitlib.inference",
    "evaluate_model": "vitlib.inference",
    "EvaluationReport": "vitlib.inference",
    "optimize_for_inference": "vitlib.inference",
    "export_onnx": "vitlib.inference",
    "extract_features": "vitlib.inference",
    "linear_probe": "vitlib.inference",
}

__all__ = [
    "SIZES",
    "AdaptedCheckpointWarning",
    "CheckpointError",
    "ConfigError",
    "DataError",
    "DropPath",
    "EvaluationReport",
    "History",
    "InputShapeError",
    "InputTypeError",
    "Intermediates",
    "LayerScale",
    "MLPBlock",
    "MissingExtraError",
    "MultiheadSelfAttentionBlock",
    "NonFiniteWeightsWarning",
    "PatchEmbedding",
    "Prediction",
    "Preprocessing",
    "SaveError",
    "TrainConfig",
    "TransformerEncoderBlock",
    "ViT",
    "ViTConfig",
    "VitlibError",
    "__version__",
    "attach_metadata",
    "count_flops",
    "count_parameters",
    "create_model",
    "evaluate_model",
    "export_onnx",
    "extract_features",
    "fit",
    "linear_probe",
    "list_presets",
    "load_pretrained",
    "model_metadata",
    "optimize_for_inference",
    "predict",
    "save_pretrained",
]


def __getattr__(name: str) -> Any:
    """Import the module of a name in ``_LAZY`` on first use (PEP 562)."""
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value  # later lookups do not come here again
        return value
    raise AttributeError(f"module 'vitlib' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
