"""vitlib: the Vision Transformer of "An Image is Worth 16x16 Words" as typed, composable blocks.

The public API, in three lines:

```python
cfg = vitlib.ViTConfig.from_preset("ViT-B/16", num_classes=3)
model = vitlib.ViT.from_config(cfg)          # or vitlib.create_model("ViT-B/16", num_classes=3)
vitlib.count_parameters(cfg), vitlib.count_flops(cfg)
```
"""

from __future__ import annotations

from ._version import __version__
from .blocks import (
    DropPath,
    LayerScale,
    MLPBlock,
    MultiheadSelfAttentionBlock,
    PatchEmbedding,
    TransformerEncoderBlock,
)
from .checkpoints import (
    AdaptedCheckpointWarning,
    ModelMetadata,
    NonFiniteWeightsWarning,
    attach_metadata,
    export_state_dict,
    load_pretrained,
    model_metadata,
    save_pretrained,
)
from .config import SIZES, ViTConfig, list_presets
from .counting import count_flops, count_parameters
from .errors import (
    CheckpointError,
    ConfigError,
    DataError,
    InputShapeError,
    InputTypeError,
    InsufficientMemoryError,
    VitlibError,
)
from .inference.evaluate import EvaluationReport, evaluate_model
from .inference.predict import Prediction, predict
from .position import resample_position_embedding
from .vit import ViT, create_model

__all__ = [
    "SIZES",
    "AdaptedCheckpointWarning",
    "CheckpointError",
    "ConfigError",
    "DataError",
    "DropPath",
    "EvaluationReport",
    "InputShapeError",
    "InputTypeError",
    "InsufficientMemoryError",
    "LayerScale",
    "MLPBlock",
    "ModelMetadata",
    "MultiheadSelfAttentionBlock",
    "NonFiniteWeightsWarning",
    "PatchEmbedding",
    "Prediction",
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
    "export_state_dict",
    "list_presets",
    "load_pretrained",
    "model_metadata",
    "predict",
    "resample_position_embedding",
    "save_pretrained",
]
