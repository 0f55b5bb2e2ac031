"""A quantised frozen base for Flux/SD3 LoRA runs (``--quantize_base nf4|int8``): the memory path for 16 GB GPUs.

The transformer and the T5 encoder are frozen in a LoRA run, so they can be loaded quantised while the adapters train
in full precision on top (QLoRA). The loading is diffusers' own: a [`~diffusers.PipelineQuantizationConfig`] whose
``quant_mapping`` gives the transformer a diffusers quantisation config and T5 a transformers one, passed to the
stock pipeline's ``from_pretrained``. Two methods:

- ``"nf4"``: bitsandbytes 4-bit NormalFloat with double quantisation, computing in bf16 (fp16 under
  ``--mixed_precision fp16``), as diffusers' ``research_projects/flux_lora_quantization`` example.
- ``"int8"``: torchao int8 weight-only.

Both need a CUDA GPU for training (diffusers' bitsandbytes quantiser refuses to load without one, and the quantised
layers are GPU kernels), and the ``quant`` extra (``pip install 'hfvision[quant]'``). Everything is checked by
[`check_quantization`] before any weights load, with one line naming the flag and the fix.
"""

from __future__ import annotations

from dataclasses import dataclass

from ...utils.import_utils import is_available
from ...utils.logging import get_logger

logger = get_logger(__name__)

QUANTIZATION_METHODS = ("nf4", "int8")
# method -> (import name, distribution) of the package that provides its kernels
_PACKAGES = {"nf4": ("bitsandbytes", "bitsandbytes"), "int8": ("torchao", "torchao")}
# the frozen T5 encoder of each flow family, quantised with the transformer
_T5 = {"flux": "text_encoder_2", "sd3": "text_encoder_3"}


@dataclass(frozen=True)
class QuantizationPlan:
    """What to quantise and how, decided before loading.

    Attributes:
        method (`str`): ``"nf4"`` or ``"int8"``.
        compute_dtype (`str`): ``"bfloat16"`` or ``"float16"`` (nf4's matmul dtype).
        components (`tuple[str]`): pipeline components to load quantised (the transformer and T5).
    """

    method: str
    compute_dtype: str
    components: tuple[str, ...]


def check_quantization(config, base) -> QuantizationPlan | None:
    """Check ``config.quantize_base`` against ``base`` and the machine; one-line errors before any weights load.

    Args:
        config ([`DreamBoothConfig`]): the run (``quantize_base``, ``use_lora``, ``mixed_precision``).
        base ([`~hfvision.training.dreambooth.components.ResolvedBaseModel`]): the resolved base model.

    Returns:
        [`QuantizationPlan`] or `None` (no quantisation asked).
    """
    import torch

    from ...models.families import get_family
    from .runtime import use_cpu

    method = getattr(config, "quantize_base", None)
    if method is None:
        return None
    if method not in QUANTIZATION_METHODS:
        raise ValueError(f"--quantize_base {method}: use one of {', '.join(QUANTIZATION_METHODS)}")
    if base.family is None or not get_family(base.family).flow:
        raise ValueError(
            f"--quantize_base {method} applies to Flux/SD3 transformers; {base.name} is a UNet model (drop it)"
        )
    if base.kind in ("file", "url"):
        raise ValueError(
            f"--quantize_base {method} needs a diffusers folder, Hub id or registry key; {base.name} is a single "
            "file (convert it with `hfvision convert` first)"
        )
    module, dist = _PACKAGES[method]
    if use_cpu() or not torch.cuda.is_available():
        raise ValueError(
            f"--quantize_base {method} needs a CUDA GPU (the {dist} quantised layers do not train on CPU); "
            "drop --quantize_base on this machine"
        )
    if not is_available(module):
        raise ImportError(
            f"--quantize_base {method} needs the '{dist}' package, which is not installed; "
            "run: pip install 'hfvision[quant]'"
        )
    compute = "float16" if config.mixed_precision == "fp16" else "bfloat16"
    return QuantizationPlan(method, compute, ("transformer", _T5[base.family]))


def quantization_config(plan: QuantizationPlan):
    """The [`~diffusers.PipelineQuantizationConfig`] of ``plan``: a diffusers config for the transformer, a
    transformers config for T5 (both from the same method)."""
    import diffusers
    import torch
    import transformers
    from diffusers import PipelineQuantizationConfig

    compute_dtype = getattr(torch, plan.compute_dtype)
    mapping = {}
    for component in plan.components:
        library = diffusers if component == "transformer" else transformers
        if plan.method == "nf4":
            mapping[component] = library.BitsAndBytesConfig(
                load_in_4bit=True,
                bnb_4bit_quant_type="nf4",
                bnb_4bit_use_double_quant=True,
                bnb_4bit_compute_dtype=compute_dtype,
            )
        else:
            from torchao.quantization import Int8WeightOnlyConfig

            mapping[component] = library.TorchAoConfig(Int8WeightOnlyConfig())
    return PipelineQuantizationConfig(quant_mapping=mapping)


def quantization_kwargs(plan: QuantizationPlan | None) -> dict:
    """``from_pretrained`` keyword arguments for ``plan`` (``{}`` when `None`)."""
    if plan is None:
        return {}
    logger.info("loading %s quantised (%s)", ", ".join(plan.components), plan.method)
    return {"quantization_config": quantization_config(plan)}
