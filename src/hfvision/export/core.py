"""Building blocks shared by the classifier and diffusion exporters: trace one module to ONNX, check the opset and
the output folder, and describe the export in ``export_report.json``."""

from __future__ import annotations

import os
import shutil
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..utils.io import sha256_file
from ..utils.logging import get_logger
from .configs import DEFAULT_OPSET, MAX_OPSET
from .errors import ExportError, OpsetError

logger = get_logger(__name__)

EXTERNAL_DATA_THRESHOLD = 2 * 1024**3  # protobuf's hard limit: larger models keep their weights in model.onnx_data


@dataclass
class ExportResult:
    """What :func:`export_onnx` wrote: the directory, the report (as saved) and the validation report(s)."""

    output_dir: Path
    report: dict[str, Any]
    validation: Any = None
    onnx_files: list[Path] = field(default_factory=list)


def check_opset(opset: int | None, export_config=None, name: str = "the model") -> int:
    """The opset to use; raises :class:`OpsetError` when it is outside what torch or the model's ops support."""
    opset = DEFAULT_OPSET if opset is None else int(opset)
    if opset > MAX_OPSET:
        raise OpsetError(
            f"opset={opset} is above {MAX_OPSET}, the highest torch's TorchScript ONNX exporter "
            f"writes; use --opset {DEFAULT_OPSET} (default) or lower"
        )
    minimum = export_config.MIN_OPSET if export_config is not None else 7
    if opset < minimum:
        reason = f" ({export_config.MIN_OPSET_REASON})" if export_config is not None else ""
        raise OpsetError(
            f"opset={opset} is too low for {name}: its ops need opset >= {minimum}{reason}; "
            f"use --opset {max(minimum, DEFAULT_OPSET)} or omit --opset"
        )
    return opset


def check_output_dir(output_dir: Path, overwrite: bool) -> None:
    if output_dir.exists() and not output_dir.is_dir():
        raise FileExistsError(f"{output_dir} is a file; choose a directory for the ONNX export")
    if output_dir.is_dir() and any(output_dir.iterdir()) and not overwrite:
        raise FileExistsError(
            f"{output_dir} exists and is not empty; choose another directory or pass overwrite=True (--overwrite)"
        )


def export_adapter(model, export_config):
    """Wrap ``model`` so the traced graph takes the config's inputs positionally and returns flat outputs."""
    import torch

    class ExportAdapter(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, *args):
            inputs = dict(zip(export_config.inputs, args))
            return export_config.flatten_outputs(export_config.call_model(self.model, inputs))

    # eval(): torch.onnx.export restores the wrapper's training flag afterwards, recursively (a fresh Module
    # is in training mode, which would leave BatchNorm/Dropout of the wrapped model in training mode).
    return ExportAdapter().eval()


def export_to_onnx(
    model,
    export_config,
    path: str | os.PathLike,
    opset: int | None = None,
    dynamic_axes: bool = True,
    batch_size: int = 2,
    external_data_threshold: int = EXTERNAL_DATA_THRESHOLD,
) -> list[Path]:
    """Trace ``model`` with ``torch.onnx.export`` (TorchScript exporter, no onnxscript needed) into ``path``.

    Inputs, outputs, axes and dummy inputs come from ``export_config``. Weights go to ``<path>_data`` when the
    model is larger than ``external_data_threshold`` bytes. Returns the files written.
    """
    import onnx
    import torch

    path = Path(path)
    name = type(model).__name__
    opset = check_opset(opset, export_config, name)
    model.eval()
    for key, value in (export_config.values_override or {}).items():  # Optimum's config overrides
        setattr(model.config, key, value)
    size = export_config.validation_sizes()[0]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        dummy = export_config.generate_dummy_inputs(framework="pt", batch_size=batch_size, size=size)
    input_names, output_names = list(export_config.inputs), list(export_config.outputs)
    scratch = path.parent / f".{path.stem}-export"
    scratch.mkdir(parents=True, exist_ok=True)
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export.*")
            warnings.filterwarnings("ignore", category=UserWarning, module="torch.onnx")
            try:
                torch.onnx.export(
                    export_adapter(model, export_config),
                    tuple(dummy[n] for n in input_names),
                    str(scratch / path.name),
                    input_names=input_names,
                    output_names=output_names,
                    dynamic_axes=export_config.dynamic_axes() if dynamic_axes else None,
                    opset_version=opset,
                    do_constant_folding=True,
                    dynamo=False,
                )
            except torch.onnx.errors.UnsupportedOperatorError as err:
                raise OpsetError(
                    f"{name} cannot be exported at opset {opset}: {str(err).splitlines()[0]}; "
                    f"try a higher --opset (default {DEFAULT_OPSET}, max {MAX_OPSET})"
                ) from err
            except (RuntimeError, torch.onnx.errors.OnnxExporterError) as err:
                raise ExportError(f"torch.onnx.export failed for {name}: {str(err).splitlines()[0]}") from err
        proto = onnx.load(str(scratch / path.name), load_external_data=True)
        weight_bytes = sum(len(t.raw_data) for t in proto.graph.initializer)
        if weight_bytes > external_data_threshold:
            onnx.save_model(
                proto,
                str(path),
                save_as_external_data=True,
                all_tensors_to_one_file=True,
                location=f"{path.name}_data",
                size_threshold=1024,
            )
            files = [path, path.with_name(f"{path.name}_data")]
        else:
            del proto
            os.replace(scratch / path.name, path)
            files = [path]
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    try:
        onnx.checker.check_model(str(path))
    except onnx.checker.ValidationError as err:
        first = str(err).splitlines()[0]
        error = OpsetError if "domain_version" in first else ExportError
        raise error(
            f"the exported graph of {name} is invalid at opset {opset}: {first}; "
            f"try a higher --opset (default {DEFAULT_OPSET})"
        ) from err
    logger.info("exported %s to %s (opset %d, %.1f MB)", name, path, opset, sum(f.stat().st_size for f in files) / 1e6)
    return files


def build_report(
    task: str,
    name: str,
    library: str,
    export_config,
    opset: int,
    dynamic_axes: bool,
    files: dict[str, list[Path]],
    root: Path,
    validation,
) -> dict[str, Any]:
    """The ``export_report.json`` content (files are listed relative to ``root`` with size and sha256)."""
    import importlib.metadata as md

    from .. import __version__

    versions = {}
    for dist in ("torch", "transformers", "diffusers", "timm", "optimum", "onnx", "onnxruntime"):
        try:
            versions[dist] = md.version(dist)
        except md.PackageNotFoundError:
            versions[dist] = None
    configs = export_config if isinstance(export_config, dict) else {"model": export_config}
    return {
        "hfvision_version": __version__,
        "task": task,
        "source": name,
        "library": library,
        "exporter": "torch.onnx.export (TorchScript, dynamo=False) with hfvision configs on optimum.exporters",
        "opset": opset,
        "dynamic_axes": dynamic_axes,
        "components": {
            key: {
                "export_config": type(cfg).__name__,
                "inputs": {n: {str(k): v for k, v in axes.items()} for n, axes in cfg.inputs.items()},
                "outputs": {n: {str(k): v for k, v in axes.items()} for n, axes in cfg.outputs.items()},
                "quantization_mode": cfg.QUANTIZATION_MODE,
                "files": [
                    {"path": str(f.relative_to(root)), "bytes": f.stat().st_size, "sha256": sha256_file(f)}
                    for f in files[key]
                ],
            }
            for key, cfg in configs.items()
        },
        "validation": (
            validation.to_dict()
            if hasattr(validation, "to_dict")
            else validation
            if validation is not None
            else {"passed": None, "skipped": True}
        ),
        "versions": versions,
    }
