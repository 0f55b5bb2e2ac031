"""ONNX export on Optimum's core exporter framework, strict validation, int8 quantization, ONNX Runtime inference.

>>> from hfvision.export import export_onnx, load_ort_pipeline
>>> export_onnx("my-vit-classifier", "vit-onnx", task="gender-classification")  # doctest: +SKIP
>>> load_ort_pipeline("gender-classification", "vit-onnx")(image)  # doctest: +SKIP

Names load lazily: ``import hfvision.export`` imports neither torch nor onnxruntime.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

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


if TYPE_CHECKING:  # pragma: no cover
    from .configs import get_export_config, supported_architectures  # noqa: F401
    from .core import ExportResult, export_to_onnx  # noqa: F401
    from .diffusion import OrtStableDiffusionPipeline, OrtStableDiffusionXLPipeline, export_diffusion_onnx  # noqa: F401
    from .errors import (  # noqa: F401
        ExportError,
        OpsetError,
        QuantizationRefusedError,
        UnsupportedModelError,
        ValidationFailedError,
    )
    from .export import export_onnx, push_onnx_to_hub  # noqa: F401
    from .loading import load_ort_pipeline  # noqa: F401
    from .quantize import quantize_onnx  # noqa: F401
    from .runtime import (  # noqa: F401
        OrtModel,
        OrtModelForFeaturePyramid,
        OrtModelForImageClassification,
        is_onnx_export,
        select_providers,
    )
    from .validate import ValidationReport, validate_onnx  # noqa: F401
