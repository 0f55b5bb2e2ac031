"""Declarative ONNX export configs, one per architecture family, built on Optimum's core exporter framework.

Each config is an :class:`optimum.exporters.base.ExporterConfig`: Optimum's normalized configs read the model
config, Optimum's dummy input generators make the tracing/validation inputs, and the configs are registered in
Optimum's :class:`~optimum.exporters.tasks.TasksManager` under the exporter name :data:`EXPORTER`, so the lookup
(`model type + task -> config`) is Optimum's own. Near-identical families subclass one another; the registry
below is data (:func:`register` records it, :func:`register_with_optimum` hands it to the TasksManager on first
use, because importing the TasksManager pulls in every diffusers pipeline and costs seconds).

Input/output names and axes follow Optimum's ONNX layout (``pixel_values -> logits``; SD components
``input_ids -> last_hidden_state``, ``sample/timestep/encoder_hidden_states -> out_sample``,
``sample -> latent_parameters``, ``latent_sample -> sample``) so Optimum's ORTModel classes can load the output.
"""

from __future__ import annotations

import functools
from typing import Any

from optimum.exporters.base import ExporterConfig
from optimum.utils.input_generators import (
    DummySeq2SeqDecoderTextInputGenerator,
    DummyTextInputGenerator,
    DummyTimestepInputGenerator,
    DummyVisionInputGenerator,
)
from optimum.utils.normalized_config import NormalizedConfig, NormalizedTextConfig, NormalizedVisionConfig

EXPORTER = "hfvision-onnx"
"""Backend name of hfvision's configs in Optimum's TasksManager (distinct from optimum-onnx's ``"onnx"``)."""

DEFAULT_OPSET = 17
MAX_OPSET = 20  # highest opset torch's TorchScript-based exporter (dynamo=False) writes

# hfvision task -> Optimum task used for the config lookup
TASK_TO_OPTIMUM = {
    "image-classification": "image-classification",
    "gender-classification": "image-classification",
    "image-feature-pyramid": "feature-extraction",
}
DIFFUSION_TASKS = ("text-to-image", "dreambooth", "stable-diffusion")


class VisionInputGenerator(DummyVisionInputGenerator):
    """Optimum's vision input generator, where an explicit ``height``/``width`` wins over the config's image size.

    Optimum's generator always uses ``config.image_size`` when the config has one; dynamic-size exports are
    validated at a second resolution, which needs the explicit size.
    """

    def __init__(self, task: str, normalized_config, height: int | None = None, width: int | None = None, **kwargs):
        super().__init__(task, normalized_config, **kwargs)
        if height:
            self.height = height
        if width:
            self.width = width


class TimestepInputGenerator(DummyTimestepInputGenerator):
    """Optimum's timestep generator, drawing timesteps from the usual training range [0, 1000)."""

    NUM_TRAIN_TIMESTEPS = 1000

    def __init__(self, task: str, normalized_config, **kwargs):
        super().__init__(task, normalized_config, **kwargs)
        self.vocab_size = self.NUM_TRAIN_TIMESTEPS  # Optimum reads the range from the config's "vocab_size"


class OnnxExportConfig(ExporterConfig):
    """Optimum ``ExporterConfig`` plus what ``torch.onnx.export`` and strict validation need.

    Class attributes (data that subclasses override):

    - ``MIN_OPSET`` / ``MIN_OPSET_REASON``: lowest ONNX opset the family exports to, and the op that needs it.
    - ``DYNAMIC_SPATIAL``: whether height/width are dynamic axes.
    - ``SPATIAL_MULTIPLE``: validation resolutions are rounded to this multiple.
    - ``VALIDATION_MAX_SIZE``: cap on the validation resolution (VAE/UNet at full size are slow on a CPU).
    - ``TOP1_OUTPUTS``: outputs whose arg-max is a prediction (top-1 agreement is checked on them).
    - ``QUANTIZATION_MODE``: int8 mode that speeds the family up on ONNX Runtime's CPU provider
      (``"dynamic"`` for MatMul-heavy transformers, ``"static"`` for convolutional nets, ``None`` = not offered).
    - ``MODEL_KWARGS``: extra keyword arguments for the model call during export and validation.
    """

    MIN_OPSET = 14
    MIN_OPSET_REASON = "aten::scaled_dot_product_attention is exported from opset 14"
    DYNAMIC_SPATIAL = True
    SPATIAL_MULTIPLE = 32
    VALIDATION_MAX_SIZE: int | None = None
    VALIDATION_BATCH_SIZES = (1, 3)
    TOP1_OUTPUTS: tuple[str, ...] = ()
    QUANTIZATION_MODE: str | None = None
    MODEL_KWARGS: dict[str, Any] = {}
    ATOL_FOR_VALIDATION = 1e-4

    def __init__(
        self, config, task: str = "feature-extraction", int_dtype: str = "int64", float_dtype: str = "fp32", **kwargs
    ):
        super().__init__(config, task=task, int_dtype=int_dtype, float_dtype=float_dtype)

    # ---- model I/O -------------------------------------------------------------------------------------------
    @property
    def outputs(self) -> dict[str, dict[int, str]]:
        """Optimum's common outputs for the task, with a dynamic batch axis."""
        return {name: {0: "batch_size"} for name in super().outputs}

    @property
    def dynamic_spatial(self) -> bool:
        return self.DYNAMIC_SPATIAL

    @property
    def spatial_multiple(self) -> int:
        return self.SPATIAL_MULTIPLE

    def output_path(self, name: str) -> tuple:
        """Where output ``name`` sits in the model's return value (keys/indices, applied in order)."""
        return tuple(int(p) if p.isdigit() else p for p in name.split("."))

    def flatten_outputs(self, outputs) -> tuple:
        """The model's return value as a tuple in :attr:`outputs` order (what the ONNX graph returns)."""
        import torch

        if isinstance(outputs, torch.Tensor):
            if len(self.outputs) != 1:
                raise ValueError(
                    f"{type(self).__name__}: the model returned one tensor, expected {list(self.outputs)}"
                )
            return (outputs,)
        flat = []
        for name in self.outputs:
            value = outputs
            for key in self.output_path(name):
                value = value[key]
            flat.append(value)
        return tuple(flat)

    def call_model(self, model, inputs: dict):
        """Run the PyTorch model on named inputs (the export adapter and the validation reference use this)."""
        return model(**inputs, **self.MODEL_KWARGS)

    def dynamic_axes(self) -> dict[str, dict[int, str]]:
        axes = {**self.inputs, **self.outputs}
        return {name: dict(a) for name, a in axes.items() if a}

    # ---- shapes and dummy inputs ------------------------------------------------------------------------------
    def native_size(self) -> tuple[int, int] | None:
        """(height, width) the model was configured for, or ``None`` when it has no spatial input."""
        gen = VisionInputGenerator(self.task, self._normalized_config)
        return (int(gen.height), int(gen.width))

    def validation_sizes(self) -> list[tuple[int, int] | None]:
        """Two resolutions for dynamic-size models (native or capped, and about 3/4 of it), one otherwise."""
        native = self.native_size()
        if native is None or not self.dynamic_spatial:
            return [native]
        m = self.spatial_multiple
        first = tuple(min(s, self.VALIDATION_MAX_SIZE or s) for s in native)
        second = tuple(max(m, (s * 3 // 4) // m * m) for s in first)
        return [first, second] if second != first else [first]

    def generate_dummy_inputs(self, framework: str = "pt", **kwargs) -> dict:
        size = kwargs.pop("size", None)
        if size is not None:
            kwargs.setdefault("height", size[0])
            kwargs.setdefault("width", size[1])
        return super().generate_dummy_inputs(framework=framework, **kwargs)


# ---------------------------------------------------------------------------------------------------------------
# Registry: (library, model type, Optimum tasks, config class), handed to Optimum's TasksManager on first use.
_REGISTRY: list[tuple[str, str, tuple[str, ...], type[OnnxExportConfig]]] = []


def register(library: str, model_types: tuple[str, ...], tasks: tuple[str, ...]):
    """Class decorator recording a config for ``model_types`` of ``library`` and Optimum ``tasks``."""

    def decorator(cls):
        for model_type in model_types:
            _REGISTRY.append((library, model_type, tasks, cls))
        return cls

    return decorator


# ---- classifiers ----------------------------------------------------------------------------------------------
class VisionClassificationOnnxConfig(OnnxExportConfig):
    """``pixel_values (batch, 3, height, width) -> logits (batch, num_labels)``."""

    NORMALIZED_CONFIG_CLASS = NormalizedVisionConfig
    DUMMY_INPUT_GENERATOR_CLASSES = (VisionInputGenerator,)
    TOP1_OUTPUTS = ("logits",)

    @property
    def inputs(self) -> dict[str, dict[int, str]]:
        if self.dynamic_spatial:
            return {"pixel_values": {0: "batch_size", 2: "height", 3: "width"}}
        return {"pixel_values": {0: "batch_size"}}


@register("transformers", ("vit", "deit"), ("image-classification",))
class ViTOnnxConfig(VisionClassificationOnnxConfig):
    """ViT-like transformers classifiers; attention needs opset 14.

    Exported with ``interpolate_pos_encoding=True``, as transformers' own tracing path intends: the graph
    resizes the position embeddings (bicubic, as in PyTorch) to the input's patch grid, so height and width are
    dynamic axes (multiples of the patch size) and the export is validated at two resolutions. At the native
    size the resize is the identity: the outputs are the same, at the cost of one small bicubic resize of the
    position embeddings per call.
    """

    QUANTIZATION_MODE = "dynamic"
    MODEL_KWARGS = {"interpolate_pos_encoding": True}

    @property
    def spatial_multiple(self) -> int:
        patch = getattr(self._config, "patch_size", 16)
        return int(patch[0] if isinstance(patch, (tuple, list)) else patch)


@register("transformers", ("dinov2",), ("image-classification",))
class Dinov2OnnxConfig(ViTOnnxConfig):
    """DINOv2 classifiers: the model always interpolates its position embeddings (no keyword to pass)."""

    MODEL_KWARGS = {}


@register("transformers", ("convnext", "resnet", "regnet"), ("image-classification",))
class ConvNetOnnxConfig(VisionClassificationOnnxConfig):
    """Convolutional transformers classifiers: any input size."""

    MIN_OPSET = 9
    MIN_OPSET_REASON = "Erf (exact GELU) needs opset 9"
    QUANTIZATION_MODE = "static"


@register("timm", ("default-timm-config",), ("image-classification",))
class TimmClassificationOnnxConfig(VisionClassificationOnnxConfig):
    """Any timm classifier. The config is Optimum's standardized timm config (the model's ``pretrained_cfg``).

    timm models take the image positionally (``model(x)``), and their input size is dynamic unless the
    ``pretrained_cfg`` says ``fixed_input_size``.
    """

    QUANTIZATION_MODE = "static"

    @property
    def dynamic_spatial(self) -> bool:
        return not getattr(self._config, "fixed_input_size", False)

    def call_model(self, model, inputs: dict):
        return model(inputs["pixel_values"])


@register("timm", ("default-timm-config",), ("feature-extraction",))
class TimmFeaturePyramidOnnxConfig(TimmClassificationOnnxConfig):
    """timm ``features_only`` models: one output per level, ``feature_maps.0`` (finest) ... ``feature_maps.N``.

    The export sets ``feature_channels`` on the config (from ``model.feature_info``).
    """

    TOP1_OUTPUTS = ()
    QUANTIZATION_MODE = None

    @property
    def outputs(self) -> dict[str, dict[int, str]]:
        count = len(getattr(self._config, "feature_channels", ()) or ())
        if not count:
            raise ValueError("feature pyramid export needs config.feature_channels (set from model.feature_info)")
        if self.dynamic_spatial:
            return {f"feature_maps.{i}": {0: "batch_size", 2: f"height_{i}", 3: f"width_{i}"} for i in range(count)}
        return {f"feature_maps.{i}": {0: "batch_size"} for i in range(count)}

    def output_path(self, name: str) -> tuple:
        return (int(name.rsplit(".", 1)[1]),)


# ---- Stable Diffusion components --------------------------------------------------------------------------------
@register("diffusers", ("clip-text",), ("feature-extraction",))
class CLIPTextOnnxConfig(OnnxExportConfig):
    """CLIP text encoder: ``input_ids -> last_hidden_state, pooler_output, hidden_states.0..N``.

    The per-layer hidden states are exported too, so ``clip_skip`` and SDXL (penultimate layer) work on ORT.
    """

    NORMALIZED_CONFIG_CLASS = NormalizedTextConfig
    DUMMY_INPUT_GENERATOR_CLASSES = (DummyTextInputGenerator,)
    MODEL_KWARGS = {"output_hidden_states": True}
    DYNAMIC_SPATIAL = False
    FIRST_OUTPUTS = ("last_hidden_state", "pooler_output")

    @property
    def inputs(self) -> dict[str, dict[int, str]]:
        return {"input_ids": {0: "batch_size", 1: "sequence_length"}}

    @property
    def outputs(self) -> dict[str, dict[int, str]]:
        seq = {0: "batch_size", 1: "sequence_length"}
        outputs = {name: (seq if name == "last_hidden_state" else {0: "batch_size"}) for name in self.FIRST_OUTPUTS}
        for i in range(self._normalized_config.num_layers + 1):
            outputs[f"hidden_states.{i}"] = dict(seq)
        return outputs

    def native_size(self):
        return None

    def validation_sizes(self) -> list:
        # the "size" of a text input is its sequence length: the full context and a short prompt
        return [(self._config.max_position_embeddings,), (16,)]

    def generate_dummy_inputs(self, framework: str = "pt", **kwargs) -> dict:
        size = kwargs.pop("size", None)
        if size is not None:
            kwargs["sequence_length"] = size[0]
        return ExporterConfig.generate_dummy_inputs(self, framework=framework, **kwargs)


@register("diffusers", ("clip-text-with-projection",), ("feature-extraction",))
class CLIPTextWithProjectionOnnxConfig(CLIPTextOnnxConfig):
    """SDXL's second text encoder: ``text_embeds`` (pooled, projected) instead of ``pooler_output``."""

    FIRST_OUTPUTS = ("text_embeds", "last_hidden_state")


class _DiffusersConfigMixin:
    @property
    def _latent_factor(self) -> int:
        return 2 ** (len(self._config.block_out_channels) - 1)


@register("diffusers", ("unet-2d-condition",), ("semantic-segmentation",))
class UNetOnnxConfig(_DiffusersConfigMixin, OnnxExportConfig):
    """``UNet2DConditionModel``: ``sample, timestep (scalar), encoder_hidden_states -> out_sample``.

    SDXL UNets (``addition_embed_type="text_time"``) also take ``text_embeds`` and ``time_ids``.
    """

    NORMALIZED_CONFIG_CLASS = NormalizedConfig.with_args(
        image_size="sample_size",
        num_channels="in_channels",
        hidden_size="cross_attention_dim",
        vocab_size="norm_num_groups",
        allow_new=True,
    )
    DUMMY_INPUT_GENERATOR_CLASSES = (
        VisionInputGenerator,
        TimestepInputGenerator,
        DummySeq2SeqDecoderTextInputGenerator,
    )
    VALIDATION_MAX_SIZE = 16  # latent pixels: convolutions/attention are size-agnostic, CPU time is not
    ATOL_FOR_VALIDATION = 1e-4

    @property
    def spatial_multiple(self) -> int:
        return self._latent_factor

    @property
    def inputs(self) -> dict[str, dict[int, str]]:
        inputs = {
            "sample": {0: "batch_size", 2: "height", 3: "width"},
            "timestep": {},
            "encoder_hidden_states": {0: "batch_size", 1: "sequence_length"},
        }
        if getattr(self._config, "addition_embed_type", None) == "text_time":
            inputs["text_embeds"] = {0: "batch_size"}
            inputs["time_ids"] = {0: "batch_size"}
        if getattr(self._config, "time_cond_proj_dim", None) is not None:
            inputs["timestep_cond"] = {0: "batch_size"}
        return inputs

    @property
    def outputs(self) -> dict[str, dict[int, str]]:
        return {"out_sample": {0: "batch_size", 2: "height", 3: "width"}}

    def output_path(self, name: str) -> tuple:
        return ("sample",)

    def call_model(self, model, inputs: dict):
        inputs = dict(inputs)
        added = {k: inputs.pop(k) for k in ("text_embeds", "time_ids") if k in inputs}
        return model(**inputs, added_cond_kwargs=added or None)

    def generate_dummy_inputs(self, framework: str = "pt", **kwargs) -> dict:
        inputs = super().generate_dummy_inputs(framework=framework, **kwargs)
        # Optimum's seq2seq generator returns encoder_hidden_states as (tensor, None, None)
        if isinstance(inputs.get("encoder_hidden_states"), tuple):
            inputs["encoder_hidden_states"] = inputs["encoder_hidden_states"][0]
        return inputs


@register("diffusers", ("vae-encoder",), ("semantic-segmentation",))
class VaeEncoderOnnxConfig(_DiffusersConfigMixin, OnnxExportConfig):
    """VAE encoder (Optimum's wrapper): ``sample -> latent_parameters`` (mean and log-variance, concatenated)."""

    NORMALIZED_CONFIG_CLASS = NormalizedConfig.with_args(
        num_channels="in_channels", image_size="sample_size", allow_new=True
    )
    DUMMY_INPUT_GENERATOR_CLASSES = (VisionInputGenerator,)
    VALIDATION_MAX_SIZE = 64
    INPUT_NAME, OUTPUT_NAME = "sample", "latent_parameters"
    IN_AXES, OUT_AXES = ("sample_height", "sample_width"), ("latent_height", "latent_width")

    @property
    def spatial_multiple(self) -> int:
        return self._latent_factor

    @property
    def inputs(self) -> dict[str, dict[int, str]]:
        return {self.INPUT_NAME: {0: "batch_size", 2: self.IN_AXES[0], 3: self.IN_AXES[1]}}

    @property
    def outputs(self) -> dict[str, dict[int, str]]:
        return {self.OUTPUT_NAME: {0: "batch_size", 2: self.OUT_AXES[0], 3: self.OUT_AXES[1]}}


@register("diffusers", ("vae-decoder",), ("semantic-segmentation",))
class VaeDecoderOnnxConfig(VaeEncoderOnnxConfig):
    """VAE decoder (Optimum's wrapper): ``latent_sample -> sample``."""

    NORMALIZED_CONFIG_CLASS = NormalizedConfig.with_args(num_channels="latent_channels", allow_new=True)
    VALIDATION_MAX_SIZE = 16
    INPUT_NAME, OUTPUT_NAME = "latent_sample", "sample"
    IN_AXES, OUT_AXES = VaeEncoderOnnxConfig.OUT_AXES, VaeEncoderOnnxConfig.IN_AXES

    spatial_multiple = 1

    def native_size(self) -> tuple[int, int]:
        size = self._config.sample_size
        size = size if isinstance(size, (tuple, list)) else (size, size)
        return tuple(int(s) // self._latent_factor for s in size)


# ---------------------------------------------------------------------------------------------------------------
@functools.cache
def register_with_optimum() -> None:
    """Register every config above in Optimum's TasksManager under :data:`EXPORTER` (idempotent)."""
    from optimum.exporters.tasks import TasksManager

    add = TasksManager.create_register(EXPORTER, overwrite_existing=True)
    for library, model_type, tasks, cls in _REGISTRY:
        add(model_type, *tasks, library_name=library)(cls)


def supported_architectures() -> dict[str, dict[str, list[str]]]:
    """``{library: {model_type: [tasks]}}`` of the registered configs (timm: every architecture)."""
    table: dict[str, dict[str, list[str]]] = {}
    for library, model_type, tasks, _ in _REGISTRY:
        name = "any timm model" if model_type == "default-timm-config" else model_type
        table.setdefault(library, {}).setdefault(name, []).extend(tasks)
    return table


def describe_supported() -> str:
    """One line listing what can be exported, for error messages."""
    inverse = {v: k for k, v in TASK_TO_OPTIMUM.items() if k != "gender-classification"}
    groups: dict[tuple[str, str], list[str]] = {}
    for library, models in supported_architectures().items():
        if library == "diffusers":
            continue
        for name, tasks in models.items():
            key = (library, ", ".join(sorted({inverse.get(t, t) for t in tasks})))
            groups.setdefault(key, []).append(name)
    parts = [f"{library} {', '.join(names)} ({tasks})" for (library, tasks), names in groups.items()]
    parts.append("diffusers Stable Diffusion 1.x/2.x/XL and DreamBooth pipelines (text-to-image)")
    return "; ".join(parts)


def get_export_config(model, task: str, library: str) -> OnnxExportConfig:
    """The export config for ``model`` (standardized for Optimum) and hfvision ``task``, via the TasksManager.

    Raises:
        `UnsupportedModelError`: the architecture/task has no config; the message lists the supported ones.
    """
    from optimum.exporters.tasks import TasksManager

    from .errors import UnsupportedModelError

    register_with_optimum()
    optimum_task = TASK_TO_OPTIMUM.get(task, task)
    model_type = getattr(model.config, "export_model_type", None) or getattr(model.config, "model_type", "?")
    try:
        constructor = TasksManager.get_exporter_config_constructor(
            EXPORTER, model=model, task=optimum_task, library_name=library
        )
    except (KeyError, ValueError) as err:
        raise UnsupportedModelError(
            f"no ONNX export config for {library} model type {model_type!r} with task {task!r}. "
            f"Supported: {describe_supported()}"
        ) from err
    return constructor(model.config)
