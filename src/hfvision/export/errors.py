"""Errors raised by the ONNX exporters. All are ``ValueError``s, so the CLI prints them as one-line user errors."""

from __future__ import annotations


class ExportError(ValueError):
    """Base class of the export errors."""


class UnsupportedModelError(ExportError):
    """The architecture or task has no export config; the message lists the supported ones."""


class OpsetError(ExportError):
    """The requested ONNX opset is outside what the model's ops or torch's exporter support."""


class ValidationFailedError(ExportError):
    """ONNX Runtime's outputs do not match PyTorch's within the tolerance; nothing was written.

    Attributes:
        report (`ValidationReport`): the full comparison (every case, every output).
    """

    def __init__(self, message: str, report=None):
        super().__init__(message)
        self.report = report


class QuantizationRefusedError(ExportError):
    """The int8 model's top-1 agreement with fp32 is below the threshold; it was not written (pass ``force``).

    Attributes:
        report (`dict`): the quantization report (agreement, speedup, threshold).
    """

    def __init__(self, message: str, report: dict | None = None):
        super().__init__(message)
        self.report = report
