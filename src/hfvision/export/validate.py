"""Strict validation of an ONNX export: ONNX Runtime against PyTorch, failing (not warning) on a mismatch.

Every export is run on Optimum's dummy inputs *and* on real inputs (the bundled photos through the model's
own preprocessing, real prompts for text encoders), at two batch sizes and, for models with dynamic height and
width, two resolutions. Each output's max/mean absolute difference is reported; classifier logits also get
top-1 agreement. A difference above ``atol``, a shape mismatch, a non-finite value, or a top-1 flip that is not
a genuine tie (PyTorch's top-2 margin within ``atol``) fails the validation.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from ..utils.logging import get_logger
from .errors import ValidationFailedError

logger = get_logger(__name__)

# Bundled photos (hfvision.testing.sample_image) used as real validation inputs, in order.
VALIDATION_PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "china", "flower", "camera", "immunohistochemistry")


@dataclass
class OutputDiff:
    name: str
    shape: list[int]
    max_abs_diff: float
    mean_abs_diff: float
    ok: bool
    problem: str | None = None


@dataclass
class ValidationCase:
    inputs: str
    batch_size: int
    size: tuple[int, ...] | None
    outputs: list[OutputDiff] = field(default_factory=list)
    top1_agreement: float | None = None
    top1_flips: int = 0
    error: str | None = None

    @property
    def passed(self) -> bool:
        return self.error is None and self.top1_flips == 0 and all(o.ok for o in self.outputs)


@dataclass
class ValidationReport:
    """Result of :func:`validate_onnx`: every case (inputs kind x batch size x size) and every output."""

    model: str
    atol: float
    cases: list[ValidationCase] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return bool(self.cases) and all(c.passed for c in self.cases)

    @property
    def max_abs_diff(self) -> float:
        return max((o.max_abs_diff for c in self.cases for o in c.outputs), default=float("nan"))

    @property
    def top1_agreement(self) -> float | None:
        values = [c.top1_agreement for c in self.cases if c.top1_agreement is not None and c.inputs != "dummy"]
        return min(values) if values else None

    def rows(self) -> list[dict[str, Any]]:
        """One row per case and output, for tables (demo, CLI)."""
        rows = []
        for c in self.cases:
            size = "x".join(map(str, c.size)) if c.size else "-"
            if c.error:
                rows.append(
                    {
                        "model": self.model,
                        "inputs": c.inputs,
                        "batch": c.batch_size,
                        "size": size,
                        "output": "-",
                        "max abs diff": "-",
                        "mean abs diff": "-",
                        "top-1": "-",
                        "result": f"FAIL: {c.error}",
                    }
                )
            for o in c.outputs:
                top1 = "-" if c.top1_agreement is None or o.name != c.outputs[0].name else f"{c.top1_agreement:.0%}"
                rows.append(
                    {
                        "model": self.model,
                        "inputs": c.inputs,
                        "batch": c.batch_size,
                        "size": size,
                        "output": o.name,
                        "max abs diff": f"{o.max_abs_diff:.2e}",
                        "mean abs diff": f"{o.mean_abs_diff:.2e}",
                        "top-1": top1,
                        "result": "ok"
                        if o.ok and (c.top1_flips == 0 or top1 == "-")
                        else f"FAIL: {o.problem or f'{c.top1_flips} top-1 flip(s)'}",
                    }
                )
        return rows

    def summary(self, only_failures: bool = False) -> str:
        """A plain-text table of :meth:`rows` (all rows, or the failing ones)."""
        rows = [r for r in self.rows() if not only_failures or r["result"] != "ok"]
        if not rows:
            return ""
        cols = [c for c in rows[0] if c != "model"]
        widths = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in cols}
        lines = ["  ".join(c.ljust(widths[c]) for c in cols)]
        lines += ["  ".join(str(r[c]).ljust(widths[c]) for c in cols) for r in rows]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "atol": self.atol,
            "passed": self.passed,
            "max_abs_diff": self.max_abs_diff,
            "top1_agreement": self.top1_agreement,
            "notes": self.notes,
            "cases": [{**asdict(c), "passed": c.passed} for c in self.cases],
        }

    def raise_for_failure(self) -> None:
        """Raise :class:`ValidationFailedError` (with the failing rows) unless every case passed."""
        if self.passed:
            return
        failing = sum(not c.passed for c in self.cases)
        raise ValidationFailedError(
            f"ONNX validation FAILED for {self.model}: {failing}/{len(self.cases)} case(s) differ from PyTorch "
            f"beyond atol={self.atol:g}; nothing was written.\n{self.summary(only_failures=True)}",
            report=self,
        )


def make_session(path: str | os.PathLike, providers: list[str] | None = None, threads: int | None = None):
    """An ONNX Runtime session on ``path`` (CPU unless ``providers`` says otherwise)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), options, providers=providers or ["CPUExecutionProvider"])


def run_session(session, inputs: dict) -> list:
    """Run ``session`` on named torch/numpy inputs, cast to the dtypes the graph declares."""
    import numpy as np

    from .runtime import ORT_TO_NUMPY

    feed = {}
    for meta in session.get_inputs():
        value = inputs[meta.name]
        value = value.detach().cpu().numpy() if hasattr(value, "detach") else np.asarray(value)
        feed[meta.name] = value.astype(ORT_TO_NUMPY.get(meta.type, value.dtype), copy=False)
    return session.run(None, feed)


def _compare(model, export_config, session, inputs: dict, kind: str, batch_size: int, size, atol: float):
    import numpy as np
    import torch

    case = ValidationCase(inputs=kind, batch_size=batch_size, size=tuple(size) if size else None)
    with torch.no_grad():
        reference = [
            t.detach().float().cpu().numpy()
            for t in export_config.flatten_outputs(export_config.call_model(model, inputs))
        ]
    try:
        actual = run_session(session, inputs)
    except Exception as err:  # noqa: BLE001 - an ONNX Runtime failure is a validation failure, reported per case
        case.error = f"{type(err).__name__}: {str(err).splitlines()[0][:200]}"
        return case
    for name, ref, out in zip(export_config.outputs, reference, actual):
        problem = None
        if tuple(ref.shape) != tuple(out.shape):
            problem = f"shape {list(out.shape)} != PyTorch {list(ref.shape)}"
            diff = np.array([np.inf])
        else:
            diff = np.abs(ref.astype(np.float64) - out.astype(np.float64))
            if not np.isfinite(out).all() and np.isfinite(ref).all():
                problem = "non-finite values"
        max_diff = float(diff.max()) if diff.size else 0.0
        if problem is None and not max_diff <= atol:
            problem = f"max abs diff {max_diff:.2e} > atol {atol:g}"
        case.outputs.append(
            OutputDiff(
                name, list(out.shape), max_diff, float(diff.mean()) if diff.size else 0.0, problem is None, problem
            )
        )
        if name in export_config.TOP1_OUTPUTS and problem is None:
            ref2, out2 = ref.reshape(-1, ref.shape[-1]), out.reshape(-1, out.shape[-1])
            agree = ref2.argmax(-1) == out2.argmax(-1)
            top2 = np.sort(ref2, axis=-1)[:, -2:] if ref2.shape[-1] > 1 else np.concatenate([ref2, ref2], -1)
            tie = (top2[:, 1] - top2[:, 0]) <= atol
            case.top1_agreement = float(agree.mean())
            case.top1_flips = int((~agree & ~tie).sum())
    return case


def validate_onnx(
    model,
    export_config,
    onnx_path: str | os.PathLike,
    atol: float | None = None,
    real_inputs: Callable[[int, tuple | None], dict] | None = None,
    real_inputs_name: str = "images",
    static_shape: tuple[int, tuple | None] | None = None,
    seed: int = 0,
    name: str | None = None,
) -> ValidationReport:
    """Compare ONNX Runtime with PyTorch on dummy and real inputs; returns the report (does not raise).

    Args:
        model (`torch.nn.Module`): the PyTorch model that was exported (the reference).
        export_config (`OnnxExportConfig`): its export config (inputs, outputs, sizes, dummy inputs).
        onnx_path (`str` or `os.PathLike`): the exported ``.onnx`` file.
        atol (`float`, *optional*): tolerance; defaults to the config's ``ATOL_FOR_VALIDATION``.
        real_inputs (`Callable`, *optional*): ``(batch_size, size) -> inputs`` built from real data.
        real_inputs_name (`str`, *optional*, defaults to `"images"`): how the report labels the real inputs.
        static_shape (`tuple`, *optional*): ``(batch_size, size)`` for exports without dynamic axes.
        seed (`int`, *optional*, defaults to 0): seed of the dummy inputs.
        name (`str`, *optional*): model name in the report.

    >>> report = validate_onnx(model, config, "out/model.onnx")  # doctest: +SKIP
    >>> report.raise_for_failure()  # doctest: +SKIP
    """
    import torch

    atol = float(export_config.ATOL_FOR_VALIDATION if atol is None else atol)
    report = ValidationReport(model=name or type(model).__name__, atol=atol)
    session = make_session(onnx_path)
    if static_shape is not None:
        batch_sizes, sizes = (static_shape[0],), [static_shape[1]]
        report.notes.append("static shapes: validated at the export shape only")
    else:
        batch_sizes, sizes = export_config.VALIDATION_BATCH_SIZES, export_config.validation_sizes()
        if len(sizes) == 1 and sizes[0] is not None:
            report.notes.append(f"fixed input size {sizes[0]} (as in PyTorch): validated at that size only")
    for i, size in enumerate(sizes):
        for j, batch_size in enumerate(batch_sizes):
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed + 10 * i + j)
                dummy = export_config.generate_dummy_inputs(framework="pt", batch_size=batch_size, size=size)
            report.cases.append(_compare(model, export_config, session, dummy, "dummy", batch_size, size, atol))
            if real_inputs is not None:
                real = real_inputs(batch_size, size)
                report.cases.append(
                    _compare(model, export_config, session, real, real_inputs_name, batch_size, size, atol)
                )
    logger.info(
        "validated %s: %d cases, max abs diff %.2e (atol %g): %s",
        report.model,
        len(report.cases),
        report.max_abs_diff,
        atol,
        "passed" if report.passed else "FAILED",
    )
    return report


def image_inputs(processor, photos: tuple[str, ...] = VALIDATION_PHOTOS) -> Callable[[int, tuple | None], dict]:
    """Real validation inputs: the bundled photos through ``processor``, resized to the case's resolution."""
    cache: dict[int, Any] = {}

    def make(batch_size: int, size: tuple | None) -> dict:
        import torch.nn.functional as F

        from ..data.samples import sample_image

        if batch_size not in cache:
            images = [sample_image(photos[i % len(photos)]) for i in range(batch_size)]
            cache[batch_size] = processor(images=images, return_tensors="pt")["pixel_values"].float()
        pixel_values = cache[batch_size]
        if size is not None and tuple(pixel_values.shape[-2:]) != tuple(size):
            pixel_values = F.interpolate(pixel_values, size=tuple(size), mode="bilinear", antialias=True)
        return {"pixel_values": pixel_values}

    return make
