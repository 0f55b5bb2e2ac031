"""ONNX Runtime inference on hfvision/Optimum ONNX exports, behind the same interfaces as the PyTorch models.

:class:`OrtModelForImageClassification` quacks like a transformers classifier (``config``, ``device``, ``dtype``,
``forward(pixel_values) -> ImageClassifierOutput``), so transformers' and hfvision's pipeline classes run on it
unchanged; :func:`hfvision.export.loading.load_ort_pipeline` builds such a pipeline from an export directory or Hub repo.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ..utils.logging import get_logger

logger = get_logger(__name__)

ORT_TO_NUMPY = {
    "tensor(float)": "float32",
    "tensor(float16)": "float16",
    "tensor(double)": "float64",
    "tensor(int64)": "int64",
    "tensor(int32)": "int32",
    "tensor(int8)": "int8",
    "tensor(uint8)": "uint8",
    "tensor(bool)": "bool",
}
PROVIDER_ALIASES = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider"}
ONNX_FILE = "model.onnx"
QUANTIZED_FILE = "model_quantized.onnx"
REPORT_FILE = "export_report.json"
ORT_TASKS = ("image-classification", "gender-classification", "image-feature-pyramid", "text-to-image")


def select_providers(provider: str | list[str] | None = None) -> list[str]:
    """ONNX Runtime providers: CUDA when ORT has it (then CPU as fallback), else CPU; or the one(s) asked for.

    Args:
        provider (`str` or `list[str]`, *optional*): ``"cpu"``, ``"cuda"`` or full provider names.
    """
    import onnxruntime as ort

    available = ort.get_available_providers()
    if provider is None:
        wanted = ["CUDAExecutionProvider"] if "CUDAExecutionProvider" in available else []
        return [*wanted, "CPUExecutionProvider"]
    requested = [provider] if isinstance(provider, str) else list(provider)
    names = [PROVIDER_ALIASES.get(p.lower(), p) for p in requested]
    missing = [n for n in names if n not in available]
    if missing:
        raise ValueError(
            f"ONNX Runtime provider(s) {missing} not available in this onnxruntime build; available: {available}"
        )
    return names if "CPUExecutionProvider" in names else [*names, "CPUExecutionProvider"]


def make_session_options(
    intra_op_num_threads: int | None = None, inter_op_num_threads: int | None = None, session_options=None
):
    """``onnxruntime.SessionOptions`` with full graph optimisation and the thread counts given."""
    import onnxruntime as ort

    options = session_options or ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if intra_op_num_threads is not None:
        options.intra_op_num_threads = int(intra_op_num_threads)
    if inter_op_num_threads is not None:
        options.inter_op_num_threads = int(inter_op_num_threads)
    return options


def resolve_model_dir(
    model: str | os.PathLike,
    revision: str | None = None,
    token: str | bool | None = None,
    subfolder: str | None = None,
) -> Path:
    """A local directory for ``model``: itself when it is one, else a snapshot of the Hub repo ``model``."""
    path = Path(model)
    if path.is_dir():
        return path / subfolder if subfolder else path
    if path.exists():
        raise ValueError(f"{model} is a file; pass the export directory that holds {ONNX_FILE}")
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, HFValidationError, OfflineModeIsEnabled
    from huggingface_hub.utils import validate_repo_id

    try:
        validate_repo_id(str(model))
    except HFValidationError:
        raise FileNotFoundError(f"{model}: no such directory (and not a valid Hub repo id)") from None

    try:
        local = snapshot_download(str(model), revision=revision, token=token)
    except (HfHubHTTPError, OfflineModeIsEnabled, OSError, ValueError) as err:
        raise FileNotFoundError(f"{model}: not a local directory and not loadable from the Hub ({err})") from err
    return Path(local) / subfolder if subfolder else Path(local)


def is_onnx_export(model: Any) -> bool:
    """Whether ``model`` (a directory or Hub repo id) holds an ONNX export (``model.onnx`` or SD ``unet/model.onnx``)."""
    if not isinstance(model, (str, os.PathLike)):
        return False
    path = Path(model)
    if path.is_dir():
        return any((path / name).is_file() for name in (ONNX_FILE, QUANTIZED_FILE, f"unet/{ONNX_FILE}"))
    return False


class OrtModel:
    """One ONNX Runtime session with the model's config and torch-like ``device``/``dtype``/``to``/``eval``.

    Args:
        path (`str` or `os.PathLike`): the ``.onnx`` file.
        config (*optional*): the model's config object (transformers ``PretrainedConfig`` or diffusers dict).
        provider (`str` or `list[str]`, *optional*): see :func:`select_providers`.
        session_options (`onnxruntime.SessionOptions`, *optional*): base session options.
        intra_op_num_threads (`int`, *optional*): threads inside one op (ONNX Runtime's default: all cores).
    """

    main_input_name = "pixel_values"

    def __init__(
        self,
        path: str | os.PathLike,
        config=None,
        provider: str | list[str] | None = None,
        session_options=None,
        intra_op_num_threads: int | None = None,
    ):
        import onnxruntime as ort
        import torch

        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"{self.path}: no such ONNX file")
        self.providers = select_providers(provider)
        options = make_session_options(intra_op_num_threads, session_options=session_options)
        self.session = ort.InferenceSession(str(self.path), options, providers=self.providers)
        self.config = config
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]
        self._input_types = {i.name: ORT_TO_NUMPY.get(i.type, "float32") for i in self.session.get_inputs()}
        on_cuda = self.session.get_providers()[0] == "CUDAExecutionProvider"
        self.device = torch.device("cuda" if on_cuda else "cpu")
        first_float = next((t for t in self._input_types.values() if t.startswith("float")), "float32")
        self.dtype = getattr(torch, first_float)

    # torch.nn.Module-like surface used by pipelines
    def to(self, *args, **kwargs):
        return self

    def eval(self):
        return self

    def can_generate(self) -> bool:
        return False

    def modules(self):  # diffusers looks for offloading hooks on a component's modules
        return iter((self,))

    def parameters(self):
        return iter(())

    @property
    def input_modalities(self) -> tuple[str, ...]:
        return ("image",)

    def run(self, inputs: dict[str, Any]) -> dict[str, Any]:
        """Run the session on named inputs (torch tensors or numpy arrays); returns numpy outputs by name."""
        import numpy as np

        feed = {}
        for name in self.input_names:
            if name not in inputs:
                raise ValueError(f"{self.path.name} needs input {name!r}; got {sorted(inputs)}")
            value = inputs[name]
            value = value.detach().cpu().numpy() if hasattr(value, "detach") else np.asarray(value)
            feed[name] = value.astype(self._input_types[name], copy=False)
        return dict(zip(self.output_names, self.session.run(None, feed)))

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.path}, providers={self.session.get_providers()})"


class OrtPreTrainedModel(OrtModel):
    """An [`OrtModel`] exported from a transformers / timm model: ``from_pretrained`` reads its folder (or Hub repo)."""

    @classmethod
    def from_pretrained(
        cls,
        model: str | os.PathLike,
        file_name: str = ONNX_FILE,
        revision: str | None = None,
        token: str | bool | None = None,
        **kwargs,
    ):
        """Load ``file_name`` of ``model`` (a folder or Hub repo id) with its ``config.json``; ``kwargs`` go to the
        session (see [`OrtModel`])."""
        from transformers import AutoConfig

        model_dir = resolve_model_dir(model, revision=revision, token=token)
        return cls(model_dir / file_name, config=AutoConfig.from_pretrained(model_dir), **kwargs)


class OrtModelForImageClassification(OrtPreTrainedModel):
    """ONNX Runtime image classifier returning transformers' ``ImageClassifierOutput``.

    >>> model = OrtModelForImageClassification.from_pretrained("out/vit-onnx")  # doctest: +SKIP
    >>> model(pixel_values=torch.rand(1, 3, 64, 64)).logits.shape  # doctest: +SKIP
    torch.Size([1, 2])
    """

    @classmethod
    def from_pretrained(cls, model: str | os.PathLike, *args, **kwargs) -> OrtModelForImageClassification:
        loaded = super().from_pretrained(model, *args, **kwargs)
        if "logits" not in loaded.output_names:
            raise ValueError(
                f"{loaded.path} is not a classifier export (outputs {loaded.output_names}, no logits); "
                f"it was exported for {export_task(loaded.path.parent)!r}"
            )
        return loaded

    def forward(self, pixel_values=None, **kwargs):
        import torch
        from transformers.modeling_outputs import ImageClassifierOutput

        if pixel_values is None:
            raise ValueError("pixel_values is required")
        out = self.run({"pixel_values": pixel_values})
        return ImageClassifierOutput(logits=torch.from_numpy(out["logits"]).to(self.device))


class OrtModelForFeaturePyramid(OrtPreTrainedModel):
    """ONNX Runtime timm ``features_only`` export that quacks like transformers' ``TimmWrapperModel``.

    ``forward(pixel_values, output_hidden_states=[levels])`` returns ``TimmWrapperModelOutput`` whose
    ``hidden_states`` are the requested feature levels (timm's level numbering, as in ``forward_intermediates``);
    ``timm_model.feature_info`` lists the levels (``num_chs``, ``reduction``, ``module``).
    """

    def __init__(self, path, config=None, **kwargs):
        from types import SimpleNamespace

        super().__init__(path, config=config, **kwargs)
        info = (getattr(config, "onnx_export", None) or {}).get("feature_info")
        if not info or len(info) != len(self.output_names):
            raise ValueError(
                f"{self.path}: not a feature-pyramid export (config.json has no onnx_export.feature_info "
                "matching the model outputs)"
            )
        self.timm_model = SimpleNamespace(feature_info=[dict(level) for level in info])

    @property
    def feature_info(self) -> list[dict]:
        return self.timm_model.feature_info

    def forward(self, pixel_values=None, output_hidden_states=None, do_pooling=None, **kwargs):
        import torch
        from transformers.models.timm_wrapper.modeling_timm_wrapper import TimmWrapperModelOutput

        out = self.run({"pixel_values": pixel_values})
        maps = [torch.from_numpy(out[name]).to(self.device) for name in self.output_names]
        if output_hidden_states is True:
            hidden = tuple(maps)
        elif output_hidden_states:
            hidden = tuple(maps[i] for i in sorted(output_hidden_states))
        else:
            hidden = None
        return TimmWrapperModelOutput(last_hidden_state=maps[-1], hidden_states=hidden)


def export_task(model_dir: Path) -> str | None:
    """The task an export was made for (its ``export_report.json``), or `None`."""
    report = Path(model_dir) / REPORT_FILE
    if report.is_file():
        try:
            return json.loads(report.read_text()).get("task")
        except (OSError, ValueError):
            return None
    return None
