"""Using a trained model: predict, evaluate, make it fast, export it.

- [`predict`][vitlib.predict]: top classes of your own images, prepared as the test set was
  ([`iter_predict`][vitlib.inference.predict.iter_predict]: one at a time, for any number);
- [`evaluate_model`][vitlib.evaluate_model]: accuracy, per-class metrics, confusion, mistakes;
- [`optimize_for_inference`][vitlib.optimize_for_inference]: an int8, bf16 or compiled copy;
- [`export_onnx`][vitlib.export_onnx]: an ONNX file with a dynamic batch;
- [`extract_features`][vitlib.extract_features] and [`linear_probe`][vitlib.linear_probe]: the
  paper's linear evaluation of frozen features, few-shot included.
"""

from __future__ import annotations

from vitlib.inference.evaluate import (
    ClassMetrics,
    ConfusionCount,
    EvaluationReport,
    Mistake,
    evaluate_model,
)
from vitlib.inference.export import ONNX_OPSET, export_onnx
from vitlib.inference.features import Features, extract_features
from vitlib.inference.optimize import (
    Precision,
    PrecisionWarning,
    is_quantized,
    optimize_for_inference,
)
from vitlib.inference.predict import (
    ImageInput,
    Prediction,
    PredictionStream,
    SkippedImage,
    iter_predict,
    predict,
)
from vitlib.inference.probe import ProbeResult, ShotResult, linear_probe

__all__ = [
    "ONNX_OPSET",
    "ClassMetrics",
    "ConfusionCount",
    "EvaluationReport",
    "Features",
    "ImageInput",
    "Mistake",
    "Precision",
    "PrecisionWarning",
    "Prediction",
    "PredictionStream",
    "ProbeResult",
    "ShotResult",
    "SkippedImage",
    "evaluate_model",
    "export_onnx",
    "extract_features",
    "is_quantized",
    "iter_predict",
    "linear_probe",
    "optimize_for_inference",
    "predict",
]
