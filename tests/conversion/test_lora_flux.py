"""Flux.1 LoRA files in the kohya-Flux layout (ComfyUI's): diffusers' own kohya-Flux reader must give the same model
as the diffusers file, and the conversion back must give the identical tensors."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from hfvision.cli.main import main
from hfvision.training.dreambooth.lora import denoiser_target_modules

# diffusers' train_dreambooth_lora_flux.py default targets (--lora_layers unset): the joint-attention projections of
# both streams plus the feed-forward linears of both streams
SCRIPT_TARGETS = [
    *(f"attn.{name}" for name in ("to_k", "to_q", "to_v", "to_out.0", "add_k_proj", "add_q_proj", "add_v_proj")),
    "attn.to_add_out",
    *("ff.net.0.proj", "ff.net.2", "ff_context.net.0.proj", "ff_context.net.2"),
]


def test_trainer_flux_default_targets_are_the_diffusers_scripts():
    assert sorted(denoiser_target_modules("flux")) == sorted(SCRIPT_TARGETS)
    # SD3's script adapts attention only
    assert sorted(denoiser_target_modules("sd3")) == sorted(SCRIPT_TARGETS[:8])


# diffusers' reader splits a single block's fused linear1 at Flux.1's real widths, so on the tiny transformer only
# the double blocks go through it (single blocks: `test_single_blocks_at_flux_widths`)
DOUBLE_ONLY = r"transformer_blocks\.\d+\.(attn\.(to_[qkv]|to_out\.0|add_[qkv]_proj|to_add_out)|ff(_context)?\.net\.(0\.proj|2)|norm1(_context)?\.linear)"  # noqa: E501


def header(path) -> dict:
    with safe_open(path, "pt") as f:
        return dict(f.metadata())


def _lora_pipeline(targets, alpha=8, rank=4):
    from peft import LoraConfig

    from hfvision.testing import tiny_flux_pipeline

    pipe = tiny_flux_pipeline("dev")
    torch.manual_seed(1)
    config = LoraConfig(r=rank, lora_alpha=alpha, target_modules=targets, init_lora_weights=False)
    pipe.transformer.add_adapter(config)
    return pipe


def _save(pipe, directory):
    from diffusers import FluxPipeline
    from peft.utils import get_peft_model_state_dict

    text = {}
    if getattr(pipe.text_encoder, "peft_config", None):
        text = {
            "text_encoder_lora_layers": get_peft_model_state_dict(pipe.text_encoder),
            "text_encoder_lora_adapter_metadata": pipe.text_encoder.peft_config["default"].to_dict(),
        }
    FluxPipeline.save_lora_weights(
        directory,
        transformer_lora_layers=get_peft_model_state_dict(pipe.transformer),
        transformer_lora_adapter_metadata=pipe.transformer.peft_config["default"].to_dict(),
        **text,
    )
    return directory / "pytorch_lora_weights.safetensors"


def _image(pipe, **kwargs):
    out = pipe(
        "a photo",
        num_inference_steps=2,
        guidance_scale=3.5,
        height=32,
        width=32,
        max_sequence_length=16,
        generator=torch.Generator().manual_seed(0),
        output_type="np",
        **kwargs,
    )
    return out.images[0]


@pytest.fixture(scope="module")
def flux_lora(tmp_path_factory):
    """A tiny Flux-dev LoRA (rank 4, alpha 8, random weights) on the double blocks and the CLIP text encoder (rank 2,
    alpha 1), diffusers layout."""
    from peft import LoraConfig

    pipe = _lora_pipeline(DOUBLE_ONLY)
    config = LoraConfig(r=2, lora_alpha=1, target_modules=["q_proj", "k_proj", "v_proj", "out_proj"])
    pipe.text_encoder.add_adapter(LoraConfig(**{**config.to_dict(), "init_lora_weights": False}))
    return _save(pipe, tmp_path_factory.mktemp("flux_lora"))


def test_kohya_flux_loads_in_diffusers_like_the_original(flux_lora, tmp_path):
    from hfvision.testing import tiny_flux_pipeline

    kohya = tmp_path / "flux_kohya.safetensors"
    assert main(["convert", "lora", str(flux_lora), str(kohya), "--to", "kohya", "--family", "flux-dev"]) == 0
    tensors = load_file(kohya)
    # ComfyUI's names: one fused qkv LoRA per stream, rank 3 x 4, block-diagonal up weight
    assert tensors["lora_unet_double_blocks_0_img_attn_qkv.lora_down.weight"].shape == (12, 32)
    assert tensors["lora_unet_double_blocks_0_txt_attn_qkv.lora_up.weight"].shape == (96, 12)
    assert float(tensors["lora_unet_double_blocks_0_img_attn_qkv.alpha"]) == 24.0  # scale 8/4 = 24/12
    assert float(tensors["lora_unet_double_blocks_0_img_mod_lin.alpha"]) == 8.0
    assert float(tensors["lora_te1_text_model_encoder_layers_0_self_attn_q_proj.alpha"]) == 1.0  # kohya's CLIP names
    assert header(kohya)["modelspec.architecture"] == "flux-1-dev/lora"

    reference = tiny_flux_pipeline("dev")
    reference.load_lora_weights(str(flux_lora))
    expected = _image(reference)
    assert not torch.equal(torch.from_numpy(expected), torch.from_numpy(_image(tiny_flux_pipeline("dev"))))
    pipe = tiny_flux_pipeline("dev")
    pipe.load_lora_weights(str(kohya))  # diffusers' kohya-Flux reader
    assert abs(expected - _image(pipe)).max() < 1e-5

    back = tmp_path / "back.safetensors"
    assert main(["convert", "lora", str(kohya), str(back), "--to", "diffusers"]) == 0
    original, converted = load_file(flux_lora), load_file(back)
    assert original.keys() == converted.keys()
    assert all(torch.equal(original[k], converted[k]) for k in original)
    assert json.loads(header(back)["lora_adapter_metadata"]) == json.loads(header(flux_lora)["lora_adapter_metadata"])


def test_single_blocks_at_flux_widths():
    """At Flux.1's real widths (3072, MLP 12288) diffusers' reader splits a single block's fused linear1 back into
    the same q/k/v LoRAs (scale folded in) and leaves the unadapted proj_mlp at zero."""
    from diffusers import FluxPipeline

    from hfvision.conversion.lora import diffusers_to_kohya

    generator = torch.Generator().manual_seed(0)
    block = "transformer.single_transformer_blocks.3"
    ours = {}
    for module in ("attn.to_q", "attn.to_k", "attn.to_v"):
        ours[f"{block}.{module}.lora_A.weight"] = torch.randn(4, 3072, generator=generator)
        ours[f"{block}.{module}.lora_B.weight"] = torch.randn(3072, 4, generator=generator)
    ours[f"{block}.proj_out.lora_A.weight"] = torch.randn(4, 15360, generator=generator)
    ours[f"{block}.proj_out.lora_B.weight"] = torch.randn(3072, 4, generator=generator)
    kohya = diffusers_to_kohya(ours, {"transformer.r": 4, "transformer.lora_alpha": 2})
    assert kohya["lora_unet_single_blocks_3_linear1.lora_up.weight"].shape == (21504, 16)
    read = FluxPipeline.lora_state_dict(dict(kohya))
    for module in ("attn.to_q", "attn.to_k", "attn.to_v", "proj_out"):  # same update B @ A x scale, on probes
        down, up = ours[f"{block}.{module}.lora_A.weight"], ours[f"{block}.{module}.lora_B.weight"]
        probe = torch.randn(down.shape[1], 8, generator=generator)
        a, b = read[f"{block}.{module}.lora_A.weight"], read[f"{block}.{module}.lora_B.weight"]
        torch.testing.assert_close(b @ (a @ probe), up @ (down @ probe) * 0.5, rtol=1e-5, atol=1e-4)
    assert not read[f"{block}.proj_mlp.lora_B.weight"].any()


def test_per_module_alpha_and_top_level_round_trip(tmp_path):
    """alpha_pattern (different scales inside a fused qkv) and the final layer (scale/shift halves swapped) convert
    back to the identical tensors."""
    from hfvision.conversion.lora import convert_lora

    generator = torch.Generator().manual_seed(0)
    state = {}
    for module, (out_f, in_f) in {
        "transformer_blocks.0.attn.to_q": (32, 32),
        "transformer_blocks.0.attn.to_v": (32, 32),
        "norm_out.linear": (64, 32),
        "single_transformer_blocks.0.proj_mlp": (128, 32),
    }.items():
        state[f"transformer.{module}.lora_A.weight"] = torch.randn(2, in_f, generator=generator)
        state[f"transformer.{module}.lora_B.weight"] = torch.randn(out_f, 2, generator=generator)
    config = {"r": 2, "lora_alpha": 2, "alpha_pattern": {"transformer_blocks.0.attn.to_v": 4}}
    meta = {"format": "pt", "lora_adapter_metadata": json.dumps({f"transformer.{k}": v for k, v in config.items()})}
    save_file(state, tmp_path / "in.safetensors", metadata=meta)
    convert_lora(tmp_path / "in.safetensors", tmp_path / "k.safetensors", to="kohya", family="flux-schnell")
    kohya = load_file(tmp_path / "k.safetensors")
    up = state["transformer.norm_out.linear.lora_B.weight"]
    assert torch.equal(kohya["lora_unet_final_layer_adaLN_modulation_1.lora_up.weight"], torch.cat([up[32:], up[:32]]))
    assert header(tmp_path / "k.safetensors")["modelspec.architecture"] == "flux-1-schnell/lora"
    convert_lora(tmp_path / "k.safetensors", tmp_path / "back.safetensors", to="diffusers")
    back = load_file(tmp_path / "back.safetensors")
    assert back.keys() == state.keys()
    assert all(torch.equal(back[k], state[k]) for k in state)


def test_unfusable_ranks_refused(tmp_path):
    from hfvision.conversion.lora import diffusers_to_kohya

    state = {
        "transformer.transformer_blocks.0.attn.to_q.lora_A.weight": torch.ones(2, 8),
        "transformer.transformer_blocks.0.attn.to_q.lora_B.weight": torch.ones(8, 2),
        "transformer.transformer_blocks.0.attn.to_k.lora_A.weight": torch.ones(4, 8),
        "transformer.transformer_blocks.0.attn.to_k.lora_B.weight": torch.ones(8, 4),
    }
    with pytest.raises(ValueError, match="different LoRA ranks"):
        diffusers_to_kohya(state)


def test_sd3_or_unknown_transformer_lora_refused(tmp_path, capsys):
    state = {
        "transformer.transformer_blocks.0.attn.to_q.lora_A.weight": torch.ones(2, 8),
        "transformer.transformer_blocks.0.attn.to_q.lora_B.weight": torch.ones(8, 2),
    }
    save_file(state, tmp_path / "in.safetensors")
    out = str(tmp_path / "out.safetensors")
    assert main(["convert", "lora", str(tmp_path / "in.safetensors"), out, "--to", "kohya"]) == 1
    assert "pass --family flux-dev or flux-schnell" in capsys.readouterr().err
    spec = {"modelspec.architecture": "stable-diffusion-3.5-medium/lora"}
    save_file(state, tmp_path / "sd3.safetensors", metadata=spec)
    assert main(["convert", "lora", str(tmp_path / "sd3.safetensors"), out, "--to", "kohya"]) == 1
    assert "sd35-medium transformer LoRA; only Flux.1" in capsys.readouterr().err
