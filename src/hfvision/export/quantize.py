"""int8 quantization of a classifier export with ``onnxruntime.quantization``, accepted only on evidence.

Two modes, chosen per family by the export config (``QUANTIZATION_MODE``) unless asked for explicitly:

- ``"dynamic"``: weights int8 (per channel), activations quantized on the fly (``quantize_dynamic``) for
  MatMul/Gemm. This is what speeds up transformers (ViT) on ONNX Runtime's CPU provider.
- ``"static"``: weights and activations int8 (``quantize_static``, QOperator format, per-channel weights),
  with activation ranges calibrated on bundled photos through the model's own preprocessing. Convolutional
  nets need this: dynamic quantization turns Conv into ``ConvInteger``, which ONNX Runtime's CPU provider
  runs *slower* than fp32.

Both keep the classifier head (the layer producing the logits) in fp32. The int8 model is compared with the
fp32 one on held-out photo views (different photos from calibration): top-1 agreement and speedup go into
``export_report.json``; below ``threshold`` the int8 file is not written unless ``force``.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from ..utils.io import atomic_write, sha256_file
from ..utils.logging import get_logger
from .errors import QuantizationRefusedError
from .runtime import ONNX_FILE, QUANTIZED_FILE, REPORT_FILE

logger = get_logger(__name__)

EVAL_PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "china")
CALIBRATION_PHOTOS = ("camera", "immunohistochemistry", "flower")
MODES = ("auto", "dynamic", "static")
_UUID_DATA = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\.data")  # ORT's external data


def photo_views(names: tuple[str, ...]) -> list:
    """Each bundled photo as eight views: full, mirrored, rotated 90 degrees, grey, and four 70-80% crops."""
    from PIL import Image, ImageOps

    from ..data.samples import sample_image

    views = []
    for name in names:
        img = sample_image(name)
        w, h = img.size
        cw, ch = int(w * 0.8), int(h * 0.8)
        sw, sh = int(w * 0.7), int(h * 0.7)
        views += [
            img,
            ImageOps.mirror(img),
            img.transpose(Image.Transpose.ROTATE_90),
            ImageOps.grayscale(img).convert("RGB"),
            img.crop(((w - cw) // 2, (h - ch) // 2, (w + cw) // 2, (h + ch) // 2)),
            img.crop((0, 0, cw, ch)),
            img.crop((w - cw, h - ch, w, h)),
            img.crop((w - sw, 0, w, sh)),
        ]
    return views


def _pixel_values(processor, images) -> Any:
    return processor(images=images, return_tensors="pt")["pixel_values"].float().numpy()


class _CalibrationReader:
    """``onnxruntime.quantization.CalibrationDataReader`` over preprocessed images, one at a time."""

    def __init__(self, pixel_values, input_name: str = "pixel_values"):
        self._items = iter([{input_name: pixel_values[i : i + 1]} for i in range(len(pixel_values))])

    def get_next(self):
        return next(self._items, None)


def _images_per_second(session, pixel_values, min_seconds: float = 0.5, min_runs: int = 3) -> float:
    """Throughput from the fastest of several runs (robust to other processes sharing the CPU)."""
    feed = {"pixel_values": pixel_values}
    session.run(None, feed)  # warm-up
    best, total, runs = float("inf"), 0.0, 0
    while runs < min_runs or total < min_seconds:
        start = time.perf_counter()
        session.run(None, feed)
        elapsed = time.perf_counter() - start
        best, total, runs = min(best, elapsed), total + elapsed, runs + 1
    return len(pixel_values) / best


def classifier_head_nodes(model_path: str | os.PathLike, output: str = "logits") -> list[str]:
    """Names of the weight-carrying nodes that produce ``output`` (the classifier head), kept in fp32.

    Walks back from the graph output through shape/elementwise ops (Add for a bias, Reshape, Flatten,
    Identity) to the first Gemm/MatMul/Conv. Quantizing that last layer moves logits by about the
    quantization step, which on near-tied classes flips predictions; it costs well under 1% of the compute.
    """
    import onnx

    graph = onnx.load(str(model_path), load_external_data=False).graph
    producer = {out: node for node in graph.node for out in node.output}
    heads, todo, seen = [], [output], set()
    while todo:
        node = producer.get(todo.pop())
        if node is None or id(node) in seen:
            continue
        seen.add(id(node))
        if node.op_type in ("Gemm", "MatMul", "Conv"):
            if node.name:  # nodes_to_exclude matches by name; an empty name would match every unnamed node
                heads.append(node.name)
        elif node.op_type in ("Add", "Reshape", "Flatten", "Identity", "Squeeze", "Transpose"):
            todo.extend(i for i in node.input if i in producer)
    if not heads:
        logger.warning(
            "%s: no named Gemm/MatMul/Conv produces %r; the classifier head is quantized too", model_path, output
        )
    return heads


_SYM_SHAPE_DUMP = "sym_shape_infer_temp.onnx"


@contextlib.contextmanager
def _no_stray_files(directory: str | os.PathLike = "."):
    """Remove the model ORT's symbolic shape inference dumps into ``directory`` (the cwd) when it fails.

    Only a dump that appeared during the call is removed, with the external-data files it references.
    """
    import onnx

    dump = Path(directory) / _SYM_SHAPE_DUMP
    existed = dump.exists()
    try:
        yield
    finally:
        if dump.is_file() and not existed:
            try:
                model = onnx.load(str(dump), load_external_data=False)
                locations = {e.value for t in model.graph.initializer for e in t.external_data if e.key == "location"}
            except Exception:  # noqa: BLE001 - an unreadable dump is still ours to remove
                locations = set()
            for name in locations:
                if _UUID_DATA.fullmatch(name):
                    (dump.parent / name).unlink(missing_ok=True)
            dump.unlink(missing_ok=True)


def quantize_model(src: str | os.PathLike, dst: str | os.PathLike, mode: str, calibration=None) -> list[str]:
    """Write the int8 version of ``src`` to ``dst`` (``calibration``: preprocessed images for static mode).

    The classifier head stays fp32 (:func:`classifier_head_nodes`); returns the names of the nodes kept.
    """
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_dynamic,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with tempfile.TemporaryDirectory(prefix="hfvision-quant-") as tmp:
        # ORT's pre-processing (shape inference + basic graph optimisation) removes the Identity nodes torch
        # uses for de-duplicated weights, which the quantizer cannot handle ("Expected ... to be an initializer").
        # auto_merge: dynamic-size ViTs compute their position-embedding grid from the input shape.
        pre = Path(tmp) / "preprocessed.onnx"
        with _no_stray_files():
            quant_pre_process(str(src), str(pre), auto_merge=True)
        keep_fp32 = classifier_head_nodes(pre)
        if mode == "dynamic":
            # per-channel weights: on AVX2-only CPUs (u8 x s8 products can saturate) it keeps top-1 far closer to
            # fp32. The dynamic quantizer first rewrites Gemm as "<name>_MatMul" + "<name>_Add": exclude both names.
            exclude = keep_fp32 + [f"{name}_MatMul" for name in keep_fp32]
            quantize_dynamic(
                str(pre),
                str(dst),
                op_types_to_quantize=["MatMul", "Gemm"],
                per_channel=True,
                weight_type=QuantType.QInt8,
                nodes_to_exclude=exclude,
            )
        elif mode == "static":
            if calibration is None or not len(calibration):
                raise ValueError("static quantization needs calibration images")
            # reduce_range (7-bit weights): ONNX Runtime's advice against u8 x s8 saturation on CPUs without
            # VNNI; measured on resnet18 it halves the logit error at no speed cost. Always on: the file may run
            # on any CPU, and on VNNI CPUs it costs one bit of weight precision.
            quantize_static(
                str(pre),
                str(dst),
                _CalibrationReader(calibration),
                quant_format=QuantFormat.QOperator,
                per_channel=True,
                reduce_range=True,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                calibrate_method=CalibrationMethod.MinMax,
                nodes_to_exclude=keep_fp32,
            )
        else:
            raise ValueError(f"mode={mode!r}; choose 'dynamic' or 'static'")
    return keep_fp32


def quantize_onnx(
    export_dir: str | os.PathLike,
    mode: str = "auto",
    threshold: float = 0.99,
    force: bool = False,
    file_name: str = ONNX_FILE,
    output_name: str = QUANTIZED_FILE,
    processor=None,
    threads: int | None = None,
) -> dict[str, Any]:
    """Quantize ``export_dir/model.onnx`` to int8, check it against fp32, and write ``model_quantized.onnx``.

    Args:
        export_dir (`str` or `os.PathLike`): a classifier export written by :func:`export_onnx`.
        mode (`str`, *optional*, defaults to `"auto"`): ``"dynamic"``, ``"static"`` or ``"auto"`` (the family's
            mode recorded in ``export_report.json``).
        threshold (`float`, *optional*, defaults to 0.99): minimum top-1 agreement with fp32 on held-out photos.
        force (`bool`, *optional*, defaults to `False`): write the int8 model even below ``threshold``.
        processor (*optional*): image processor (default: loaded from ``export_dir``).
        threads (`int`, *optional*): ONNX Runtime intra-op threads for the agreement/speed measurement.

    Returns:
        `dict`: the quantization report (also stored under ``"quantization"`` in ``export_report.json``).

    Raises:
        `QuantizationRefusedError`: agreement below ``threshold`` and not ``force`` (nothing written).

    >>> quantize_onnx("gender-onnx")["top1_agreement"]  # doctest: +SKIP
    1.0
    """
    import numpy as np

    from .validate import make_session

    export_dir = Path(export_dir)
    report_path = export_dir / REPORT_FILE
    if not (export_dir / file_name).is_file():
        raise FileNotFoundError(f"{export_dir / file_name}: no such ONNX file")
    report = json.loads(report_path.read_text()) if report_path.is_file() else {}
    component = report.get("components", {}).get("model", {})
    if "logits" not in component.get("outputs", {"logits": None}):
        raise ValueError(
            f"{export_dir}: int8 quantization is offered for classifiers (top-1 agreement with fp32 "
            "is its acceptance test); this export has no logits output"
        )
    if mode not in MODES:
        raise ValueError(f"mode={mode!r}; choose one of {MODES}")
    if mode == "auto":
        mode = component.get("quantization_mode") or "dynamic"
    if processor is None:
        from transformers import AutoImageProcessor

        processor = AutoImageProcessor.from_pretrained(export_dir)
    eval_pixels = _pixel_values(processor, photo_views(EVAL_PHOTOS))
    calibration = _pixel_values(processor, photo_views(CALIBRATION_PHOTOS)) if mode == "static" else None

    with tempfile.TemporaryDirectory(prefix=".quant-", dir=export_dir) as tmp:
        candidate = Path(tmp) / output_name
        start = time.perf_counter()
        kept_fp32 = quantize_model(export_dir / file_name, candidate, mode, calibration)
        seconds = time.perf_counter() - start
        fp32, int8 = make_session(export_dir / file_name, threads=threads), make_session(candidate, threads=threads)
        ref = fp32.run(None, {"pixel_values": eval_pixels})[0]
        out = int8.run(None, {"pixel_values": eval_pixels})[0]
        agreement = float((ref.argmax(-1) == out.argmax(-1)).mean())
        batch = eval_pixels[: min(8, len(eval_pixels))]
        fp32_speed, int8_speed = _images_per_second(fp32, batch), _images_per_second(int8, batch)
        quant = {
            "mode": mode,
            "file": str(export_dir / output_name),
            "threshold": threshold,
            "top1_agreement": agreement,
            "images": len(eval_pixels),
            "evaluation_photos": list(EVAL_PHOTOS),
            "calibration_photos": list(CALIBRATION_PHOTOS) if mode == "static" else None,
            "kept_fp32": kept_fp32,
            "max_abs_logit_diff": float(np.abs(ref - out).max()),
            # how close fp32's top two logits are: a flip is only meaningful when int8's error is well below this
            "fp32_median_top2_margin": (
                float(np.median(np.diff(np.sort(ref, axis=-1)[:, -2:], axis=-1))) if ref.shape[-1] > 1 else None
            ),
            "fp32_images_per_s": round(fp32_speed, 2),
            "int8_images_per_s": round(int8_speed, 2),
            "speedup": round(int8_speed / fp32_speed, 3),
            "fp32_bytes": (export_dir / file_name).stat().st_size,
            "int8_bytes": candidate.stat().st_size,
            "quantize_seconds": round(seconds, 2),
            "forced": bool(force and agreement < threshold),
        }
        accepted = agreement >= threshold or force
        quant["written"] = accepted
        if accepted:
            quant["sha256"] = sha256_file(candidate)
            del fp32, int8
            shutil.move(str(candidate), export_dir / output_name)
        if report:
            report["quantization"] = quant
            with atomic_write(report_path, "w") as f:
                json.dump(report, f, indent=2)
    logger.info(
        "int8 (%s): top-1 agreement %.1f%% on %d photo views, %.2fx fp32 speed%s",
        mode,
        100 * agreement,
        len(eval_pixels),
        quant["speedup"],
        "" if accepted else " - NOT written",
    )
    if not accepted:
        raise QuantizationRefusedError(
            f"int8 model NOT written: top-1 agreement with fp32 is {agreement:.1%} on {len(eval_pixels)} photo views, "
            f"below the threshold {threshold:.0%} (pass force=True / --force-quantize to write it anyway); "
            f"the fp32 export in {export_dir} is unaffected",
            report=quant,
        )
    return quant
