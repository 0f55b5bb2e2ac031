"""ONNX export on Optimum's core exporter framework, strict validation, int8 quantization, ONNX Runtime inference.

>>> from hfvision.export import export_onnx, load_ort_pipeline
>>> export_onnx("my-vit-classifier", "vit-onnx", task="gender-classification")  # doctest: +SKIP
>>> load_ort_pipeline("gender-classification", "vit-onnx")(image)  # doctest: +SKIP

Names load lazily: ``import hfvision.export`` imports neither torch nor onnxruntime.
"""

from __future__ import annotations

from hfvision.utils.lazy import lazy_exports

_LAZY = {
    "export_onnx": ".export",
    "export_to_onnx": ".core",
    "push_onnx_to_hub": ".export",
    "ExportResult": ".core",
    "export_diffusion_onnx": ".diffusion",
    "OrtStableDiffusionPipeline": ".diffusion",
    "OrtStableDiffusionXLPipeline": ".diffusion",
    "validate_onnx": ".validate",
    "ValidationReport": ".validate",
    "quantize_onnx": ".quantize",
    "load_ort_pipeline": ".loading",
    "is_onnx_export": ".runtime",
    "select_providers": ".runtime",
    "OrtModel": ".runtime",
    "OrtModelForImageClassification": ".runtime",
    "OrtModelForFeaturePyramid": ".runtime",
    "get_export_config": ".configs",
    "supported_architectures": ".configs",
    "ExportError": ".errors",
    "UnsupportedModelError": ".errors",
    "OpsetError": ".errors",
    "ValidationFailedError": ".errors",
    "QuantizationRefusedError": ".errors",
}

__all__ = sorted(_LAZY)
__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
