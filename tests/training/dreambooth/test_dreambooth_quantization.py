"""``--quantize_base nf4|int8`` (a quantised frozen transformer and T5 under a Flux/SD3 LoRA): every refusal is one
line before any weights load (on this CPU machine: the missing GPU), and on a GPU the stock pipeline's
``from_pretrained`` receives diffusers' ``PipelineQuantizationConfig`` for exactly the frozen transformer and T5."""

from __future__ import annotations

import pytest

from hfvision.training import DreamBoothConfig, DreamBoothTrainer
from hfvision.utils.import_utils import is_available


@pytest.fixture
def no_loading(monkeypatch):
    import hfvision.training.dreambooth.preparation as preparation_module

    monkeypatch.setattr(preparation_module, "load_base_pipeline", lambda *a, **k: pytest.fail("weights loaded"))


def _kwargs(flow_kwargs, name="flux-dev", **overrides):
    return flow_kwargs(name, **{"max_train_steps": 1, "use_lora": True, "quantize_base": "nf4", **overrides})


def test_methods_listed_once():
    from hfvision.training.dreambooth.config import QUANTIZE_BASE
    from hfvision.training.dreambooth.quantization import QUANTIZATION_METHODS

    assert QUANTIZE_BASE == QUANTIZATION_METHODS


@pytest.mark.parametrize("method", ["nf4", "int8"])
def test_cpu_refuses_in_one_line_before_loading(method, flow_kwargs, no_loading):
    with pytest.raises(ValueError) as info:
        DreamBoothTrainer(DreamBoothConfig(**_kwargs(flow_kwargs, quantize_base=method))).train()
    message = str(info.value)
    assert message.startswith(f"--quantize_base {method} needs a CUDA GPU") and "\n" not in message


def test_cli_exit_code_and_single_line(flow_kwargs, no_loading, capsys):
    from hfvision.cli.main import main

    kwargs = _kwargs(flow_kwargs, prior=False)
    capsys.readouterr()  # the fixture's model saving
    argv = ["train", "dreambooth"]
    for key, value in kwargs.items():
        if value is True:
            argv.append(f"--{key}")
        elif value not in (False, None):
            argv += [f"--{key}", str(value)]
    assert main(argv) == 1
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and "--quantize_base nf4 needs a CUDA GPU" in err[0], err


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"use_lora": False}, "quantize_base trains LoRA adapters over a frozen quantised base: add --use_lora"),
        ({"merge_lora": True}, "merge_lora would fuse into the quantised base"),
        ({"quantize_base": "fp8"}, "quantize_base='fp8' must be one of nf4, int8"),
    ],
)
def test_config_refusals(overrides, message, flow_kwargs):
    kwargs = _kwargs(flow_kwargs)
    kwargs.update(overrides)
    if not kwargs["use_lora"]:
        kwargs.update(rank=None, lora_alpha=None)
    with pytest.raises(ValueError, match=message):
        DreamBoothConfig(**kwargs)


def test_sd_base_refused(tiny_kwargs, no_loading):
    with pytest.raises(ValueError, match=r"--quantize_base nf4 applies to Flux/SD3 transformers; .* UNet model"):
        DreamBoothTrainer(DreamBoothConfig(**tiny_kwargs(use_lora=True, quantize_base="nf4"))).train()


@pytest.fixture
def fake_gpu(monkeypatch):
    """``torch.cuda.is_available()`` says yes: the checks after the device one run on this CPU machine. What imports
    torchao (transformers' quantisers, diffusers' pipelines) is imported first, with the real answer."""
    import torch
    import transformers.modeling_utils  # noqa: F401
    from diffusers import FluxPipeline, PipelineQuantizationConfig, StableDiffusion3Pipeline  # noqa: F401

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)


@pytest.mark.skipif(is_available("bitsandbytes"), reason="bitsandbytes is installed")
def test_missing_package_names_the_extra(flow_kwargs, fake_gpu):
    from hfvision.training.dreambooth.components import apply_family_options, resolve_base_model

    config = DreamBoothConfig(**_kwargs(flow_kwargs))
    with pytest.raises(ImportError, match=r"needs the 'bitsandbytes' package.*pip install 'hfvision\[quant\]'"):
        apply_family_options(config, resolve_base_model(config.pretrained_model_name_or_path))


@pytest.mark.parametrize(
    "name, precision, components, dtype",
    [
        ("flux-dev", "bf16", ("transformer", "text_encoder_2"), "bfloat16"),
        ("sd3", "fp16", ("transformer", "text_encoder_3"), "float16"),
    ],
)
def test_plan_quantises_the_frozen_transformer_and_t5(
    name, precision, components, dtype, flow_kwargs, fake_gpu, monkeypatch
):
    import hfvision.training.dreambooth.quantization as quantization
    from hfvision.training.dreambooth.components import apply_family_options, resolve_base_model

    monkeypatch.setattr(quantization, "is_available", lambda module: True)
    config = DreamBoothConfig(**_kwargs(flow_kwargs, name, mixed_precision=precision))
    base = resolve_base_model(config.pretrained_model_name_or_path)
    apply_family_options(config, base)
    assert base.quantization == quantization.QuantizationPlan("nf4", dtype, components)


@pytest.mark.parametrize("method", ["nf4", "int8"])
def test_from_pretrained_gets_diffusers_quantization_config(method, flow_kwargs, fake_gpu, monkeypatch):
    """The hook in `load_base_pipeline`: diffusers' `PipelineQuantizationConfig` with a diffusers config for the
    transformer and a transformers config for T5, nothing else quantised."""
    pytest.importorskip("bitsandbytes" if method == "nf4" else "torchao")
    import diffusers
    import torch
    import transformers

    import hfvision.training.dreambooth.components as components

    config = DreamBoothConfig(**_kwargs(flow_kwargs, quantize_base=method))
    base = components.resolve_base_model(config.pretrained_model_name_or_path)
    components.apply_family_options(config, base)
    seen = {}

    class Recorder:
        @classmethod
        def from_pretrained(cls, source, **kwargs):
            seen.update(kwargs)
            raise RuntimeError("stop")

    monkeypatch.setattr(components, "pipeline_class", lambda family: Recorder)
    with pytest.raises(RuntimeError, match="stop"):
        components.load_base_pipeline(base, torch.float32)
    quant = seen["quantization_config"]
    assert isinstance(quant, diffusers.PipelineQuantizationConfig)
    assert set(quant.quant_mapping) == {"transformer", "text_encoder_2"}
    kind = "BitsAndBytesConfig" if method == "nf4" else "TorchAoConfig"
    assert isinstance(quant.quant_mapping["transformer"], getattr(diffusers, kind))
    assert isinstance(quant.quant_mapping["text_encoder_2"], getattr(transformers, kind))
    if method == "nf4":
        for part in quant.quant_mapping.values():
            assert part.load_in_4bit and part.bnb_4bit_quant_type == "nf4"
            assert part.bnb_4bit_compute_dtype == torch.bfloat16


@pytest.mark.slow  # ~20 s, most of it importing bitsandbytes
@pytest.mark.skipif(not is_available("bitsandbytes"), reason="needs the [quant] extra (bitsandbytes)")
def test_8bit_adam_trains_a_flux_lora(flow_kwargs, train_in_process):
    """``--use_8bit_adam`` (bitsandbytes' AdamW8bit, which also steps on CPU since 0.4x) on a Flux LoRA run: the
    optimizer is bitsandbytes' and the adapters move."""
    import bitsandbytes as bnb
    import torch

    kwargs = _kwargs(
        flow_kwargs, prior=False, quantize_base=None, use_8bit_adam=True, max_train_steps=2, rank=4, learning_rate=1e-2
    )
    trainer, result = train_in_process(kwargs)
    inner = getattr(trainer.optimizer, "optimizer", trainer.optimizer)
    assert isinstance(inner, bnb.optim.AdamW8bit)
    transformer = trainer.accelerator.unwrap_model(trainer.prepared_denoiser)
    ups = [p for n, p in transformer.named_parameters() if "lora_B" in n]
    assert result.global_step == 2 and ups and any(p.abs().max() > 0 for p in ups)
    assert torch.isfinite(torch.tensor(result.final_loss))
