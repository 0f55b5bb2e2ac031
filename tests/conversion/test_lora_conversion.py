"""``hfvision convert lora``: diffusers <-> kohya LoRA files through the CLI, ModelSpec headers, safety rules; and the
ModelSpec header of single-file checkpoints."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch
from conversion_helpers import generate
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from hfvision.cli.main import main
from hfvision.conversion.modelspec import ARCHITECTURES, modelspec_metadata

# the CLI's one-line error (the subcommand may be named in full: "hfvision convert lora: error: ...")
ERROR_LINE = re.compile(r"^hfvision convert( lora)?: error: ")


def header(path) -> dict:
    with safe_open(path, "pt") as f:
        return f.metadata()


def equal_tensors(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def diffusers_lora(tmp_path_factory):
    """A tiny SD1 LoRA (rank 4, alpha 8, UNet + text encoder, random weights) in diffusers' layout, no ModelSpec."""
    from hfvision.testing import tiny_sd_pipeline
    from hfvision.training.dreambooth.lora import TEXT_ENCODER_TARGET_MODULES, UNET_TARGET_MODULES, add_lora, save_lora

    pipe = tiny_sd_pipeline("sd1")
    add_lora(pipe.unet, 4, 8, 0.0, UNET_TARGET_MODULES)
    add_lora(pipe.text_encoder, 4, 8, 0.0, TEXT_ENCODER_TARGET_MODULES)
    generator = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for module in (pipe.unet, pipe.text_encoder):
            for name, param in module.named_parameters():
                if "lora_B" in name:
                    param.copy_(torch.randn(param.shape, generator=generator) * 0.3)
    return save_lora(tmp_path_factory.mktemp("lora"), "sd1", pipe.unet, [pipe.text_encoder])


def test_cli_round_trip_carries_and_sets_modelspec(diffusers_lora, tmp_path, capsys):
    kohya, back = tmp_path / "kohya.safetensors", tmp_path / "back.safetensors"
    argv = [
        "convert",
        "lora",
        str(diffusers_lora.parent),  # the training output folder
        str(kohya),
        "--to",
        "kohya",
        "--family",
        "sd1",
        "--trigger-phrase",
        "sks dog",
        "--resolution",
        "512",
        "--metadata",
        "modelspec.author=me",
    ]
    assert main(argv) == 0
    assert "kohya layout" in capsys.readouterr().out
    meta = header(kohya)
    assert meta["modelspec.architecture"] == "stable-diffusion-v1/lora"
    assert meta["modelspec.title"] == "kohya" and meta["modelspec.trigger_phrase"] == "sks dog"
    assert meta["modelspec.resolution"] == "512x512" and meta["modelspec.author"] == "me"
    assert "lora_adapter_metadata" not in meta  # diffusers refuses kohya files that also carry it
    weights = load_file(kohya)
    assert {k.split("_")[1] for k in weights} == {"unet", "te"}
    assert {float(v) for k, v in weights.items() if k.endswith(".alpha")} == {8.0}

    # back to diffusers: the original tensors and adapter configs, the ModelSpec entries kept
    assert main(["convert", "lora", str(kohya), str(back), "--to", "diffusers"]) == 0
    assert equal_tensors(load_file(back), load_file(diffusers_lora))
    back_meta = header(back)
    assert back_meta["lora_adapter_metadata"] == header(diffusers_lora)["lora_adapter_metadata"]
    assert back_meta["modelspec.trigger_phrase"] == "sks dog" and back_meta["modelspec.title"] == "kohya"

    # OUT exists: refused unless --overwrite, and left untouched
    before = back.read_bytes()
    assert main(["convert", "lora", str(kohya), str(back), "--to", "diffusers", "--title", "x"]) == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert ERROR_LINE.match(err) and "exists" in err and "--overwrite" in err
    assert back.read_bytes() == before
    assert main(["convert", "lora", str(kohya), str(back), "--to", "diffusers", "--title", "x", "--overwrite"]) == 0
    assert header(back)["modelspec.title"] == "x"


def test_foreign_kohya_file_converts_to_the_same_images(diffusers_lora, tmp_path, tiny_model_dir):
    """A kohya file without hfvision's header (as A1111/kohya tools write them): the adapter configs are rebuilt from
    the alphas, so the converted diffusers file loads to the same images as the kohya file itself."""
    from diffusers import DiffusionPipeline

    from hfvision.conversion.lora import convert_lora

    full = convert_lora(diffusers_lora, tmp_path / "full.safetensors", to="kohya", family="sd1")
    foreign = tmp_path / "foreign.safetensors"
    save_file(load_file(full), foreign)  # same tensors, empty header
    out = convert_lora(foreign, tmp_path / "diffusers.safetensors", to="diffusers", family="sd1")
    assert header(out)["modelspec.architecture"] == "stable-diffusion-v1/lora"
    adapter = json.loads(header(out)["lora_adapter_metadata"])
    assert adapter["unet.r"] == 4 and adapter["unet.lora_alpha"] == 8 and adapter["text_encoder.lora_alpha"] == 8

    pipe = DiffusionPipeline.from_pretrained(tiny_model_dir("sd1"))
    untouched = generate(pipe)
    pipe.load_lora_weights(foreign)
    from_kohya = generate(pipe)
    pipe.unload_lora_weights()
    pipe.load_lora_weights(out)
    from_converted = generate(pipe)
    assert np.abs(from_converted - from_kohya).max() <= 1e-6
    assert np.abs(from_kohya - untouched).max() > 1e-3


def test_lora_cli_refuses_pickles_and_bad_input_in_one_line(diffusers_lora, tmp_path, capsys):
    kohya = tmp_path / "k.safetensors"
    assert main(["convert", "lora", str(diffusers_lora), str(kohya), "--to", "kohya"]) == 0
    pickle = tmp_path / "k.pt"
    torch.save(load_file(kohya), pickle)
    loha = tmp_path / "loha.safetensors"
    save_file({"lora_unet_mid_block_attentions_0_proj_in.hada_w1_a": torch.ones(2, 2)}, loha)
    capsys.readouterr()

    cases = [
        (["convert", "lora", str(pickle), str(tmp_path / "a.safetensors"), "--to", "diffusers"], "--allow-pickle"),
        (["convert", "lora", str(kohya), str(tmp_path / "a.bin"), "--to", "diffusers"], "must end in .safetensors"),
        (["convert", "lora", str(kohya), str(tmp_path / "a.safetensors"), "--to", "kohya"], "already in the kohya"),
        (["convert", "lora", str(diffusers_lora), str(tmp_path / "a.safetensors"), "--to", "diffusers"], "not in the"),
        (
            [
                "convert",
                "lora",
                str(tmp_path / "missing.safetensors"),
                str(tmp_path / "a.safetensors"),
                "--to",
                "kohya",
            ],
            "does not exist",
        ),
        (["convert", "lora", str(loha), str(tmp_path / "a.safetensors"), "--to", "diffusers"], "LoHa/LoKr"),
    ]
    for argv, message in cases:
        usage = message == "must end in .safetensors"  # a wrong OUT suffix is a usage error (exit 2)
        assert main(argv) == (2 if usage else 1), argv
        err = capsys.readouterr().err.strip()
        assert ERROR_LINE.match(err) and message in err and "\n" not in err, err
    assert not (tmp_path / "a.safetensors").exists()

    out = tmp_path / "from-pickle.safetensors"
    assert main(["convert", "lora", str(pickle), str(out), "--to", "diffusers", "--allow-pickle"]) == 0
    assert equal_tensors(load_file(out), load_file(diffusers_lora))


@pytest.mark.parametrize(
    "family, architecture, resolution",
    [
        ("sd1", "stable-diffusion-v1", "64x64"),
        ("sd2", "stable-diffusion-v2-768-v", "64x64"),
        ("sdxl", "stable-diffusion-xl-v1-base", "64x64"),
    ],
)
def test_single_file_header_carries_modelspec(family, architecture, resolution, single_file, tiny_model_dir):
    meta = header(single_file(family))
    assert meta["modelspec.sai_model_spec"] == "1.0.0"
    assert meta["modelspec.architecture"] == architecture
    assert meta["modelspec.implementation"] == ARCHITECTURES["sd2-v" if family == "sd2" else family].implementation
    assert meta["modelspec.resolution"] == resolution
    assert meta["modelspec.title"] == single_file(family).stem == family  # the output file's name
    assert meta["modelspec.trigger_phrase"] == "sks"
    assert len(meta["modelspec.date"]) == 10 and meta["modelspec.date"][4] == "-"


def test_modelspec_metadata_values():
    meta = modelspec_metadata(
        "sd2",
        title="t",
        trigger_phrase=None,
        resolution=(1024, 768),
        base_model="sd21",
        lora=True,
        prediction_type="v_prediction",
        date="2026-01-02",
    )
    assert meta == {
        "modelspec.sai_model_spec": "1.0.0",
        "modelspec.architecture": "stable-diffusion-v2-768-v/lora",
        "modelspec.implementation": "https://github.com/Stability-AI/stablediffusion",
        "modelspec.title": "t",
        "modelspec.resolution": "1024x768",
        "modelspec.date": "2026-01-02",
        "modelspec.prediction_type": "v",
        "hfvision.base_model": "sd21",
    }
    assert (
        modelspec_metadata("sd2", title="t", trigger_phrase="x", resolution=None, base_model=None, lora=False)[
            "modelspec.architecture"
        ]
        == "stable-diffusion-v2-512"
    )
    assert (
        modelspec_metadata("flux-dev", title="t", trigger_phrase=None, resolution=None, base_model=None, lora=True)[
            "modelspec.architecture"
        ]
        == "flux-1-dev/lora"
    )
    with pytest.raises(ValueError, match="family='sd4'.*sd1"):
        modelspec_metadata("sd4", title="t", trigger_phrase=None, resolution=None, base_model=None, lora=True)
    with pytest.raises(ValueError, match="WIDTHxHEIGHT"):
        modelspec_metadata("sd1", title="t", trigger_phrase=None, resolution="512", base_model=None, lora=True)


def test_kohya_unet_layout_equals_diffusers_converter(tmp_path):
    """Where diffusers' own path works (UNet-only LoRA, alpha = rank, as its SDXL script trains), the kohya state dict
    is exactly what diffusers' convert_state_dict_to_kohya writes; with alpha != rank only the alphas differ."""
    from diffusers.utils.state_dict_utils import convert_all_state_dict_to_peft, convert_state_dict_to_kohya

    from hfvision.conversion.lora import diffusers_to_kohya
    from hfvision.testing import tiny_unet
    from hfvision.training.dreambooth.lora import UNET_TARGET_MODULES, add_lora, save_lora

    for alpha in (4, 8):
        unet = tiny_unet("sdxl")
        add_lora(unet, 4, alpha, 0.0, UNET_TARGET_MODULES)
        path = save_lora(tmp_path / str(alpha), "sdxl", unet)
        weights = load_file(path)
        peer = convert_state_dict_to_kohya(convert_all_state_dict_to_peft(weights))
        ours = diffusers_to_kohya(weights, json.loads(header(path)["lora_adapter_metadata"]), sdxl=True)
        adapted = sum(1 for name, _ in unet.named_modules() if name.endswith(".lora_A"))
        assert ours.keys() == peer.keys() and len(ours) == 3 * adapted  # down, up, alpha per adapted module
        assert all(torch.equal(ours[k], peer[k]) for k in ours if not k.endswith(".alpha"))
        assert {float(v) for k, v in peer.items() if k.endswith(".alpha")} == {4.0}
        assert {float(v) for k, v in ours.items() if k.endswith(".alpha")} == {float(alpha)}


def test_per_module_alphas_survive_kohya_diffusers_kohya_on_every_sdxl_component(tmp_path):
    """A foreign SDXL kohya file whose alphas differ per module on the UNet, text_encoder and text_encoder_2 (whose
    modules keep transformers' `text_model.` level): through diffusers and back, every tensor comes back unchanged."""
    from hfvision.conversion.lora import convert_lora
    from hfvision.testing import tiny_sd_pipeline
    from hfvision.training.dreambooth.lora import TEXT_ENCODER_TARGET_MODULES, UNET_TARGET_MODULES, add_lora, save_lora

    pipe = tiny_sd_pipeline("sdxl")
    add_lora(pipe.unet, 4, 8, 0.0, UNET_TARGET_MODULES)
    for encoder in (pipe.text_encoder, pipe.text_encoder_2):
        add_lora(encoder, 4, 8, 0.0, TEXT_ENCODER_TARGET_MODULES)
    save_lora(tmp_path, "sdxl", pipe.unet, [pipe.text_encoder, pipe.text_encoder_2], kohya=True)
    weights = load_file(tmp_path / "pytorch_lora_weights_kohya.safetensors")
    planted = {}
    for prefix, alpha in (("lora_unet_down", 2.0), ("lora_te1_", 3.0), ("lora_te2_", 5.0)):
        key = sorted(k for k in weights if k.startswith(prefix) and k.endswith(".alpha"))[0]
        weights[key] = planted[key] = torch.tensor(alpha)
    assert len(planted) == 3 and any(k.startswith("lora_te2_text_model_") for k in planted)
    foreign = tmp_path / "foreign.safetensors"
    save_file(weights, foreign)  # no hfvision header: the alphas are the only record of the scales

    back = convert_lora(foreign, tmp_path / "diffusers.safetensors", to="diffusers", family="sdxl")
    patterns = {k: v for k, v in json.loads(header(back)["lora_adapter_metadata"]).items() if "alpha_pattern" in k}
    assert sorted(v for pattern in patterns.values() for v in pattern.values()) == [2.0, 3.0, 5.0]
    again = load_file(convert_lora(back, tmp_path / "again.safetensors", to="kohya", family="sdxl"))
    assert {k: float(again[k]) for k in planted} == {k: float(v) for k, v in planted.items()}
    assert equal_tensors(again, weights)


def test_dora_scale_must_be_per_output_feature(diffusers_lora):
    """kohya DoRA magnitudes are read as one per output feature, shape (out, 1); LyCORIS's input-axis layout (1, in)
    has as many values on a square layer and would be misread, so it is refused in one line."""
    from hfvision.conversion.lora import diffusers_to_kohya, kohya_to_diffusers

    weights = diffusers_to_kohya(
        load_file(diffusers_lora), json.loads(header(diffusers_lora)["lora_adapter_metadata"])
    )
    module = "lora_te_text_model_encoder_layers_0_self_attn_q_proj"  # 32 -> 32: square
    out_features, in_features = (
        weights[f"{module}.lora_up.weight"].shape[0],
        weights[f"{module}.lora_down.weight"].shape[1],
    )
    assert out_features == in_features
    magnitudes = torch.rand(out_features) + 0.5

    converted, configs = kohya_to_diffusers({**weights, f"{module}.dora_scale": magnitudes.reshape(-1, 1)})
    got = converted["text_encoder.encoder.layers.0.self_attn.q_proj.lora_magnitude_vector.weight"]
    assert torch.equal(got, magnitudes) and configs["text_encoder"]["use_dora"] is True
    for shape in [(1, in_features), (out_features,), (out_features, 2)]:
        bad = {**weights, f"{module}.dora_scale": torch.ones(shape)}
        with pytest.raises(
            ValueError, match=rf"^{module}\.dora_scale has shape {re.escape(str(shape))};.*\(32, 1\)"
        ) as err:
            kohya_to_diffusers(bad)
        assert "\n" not in str(err.value)


def _synthetic_lora(cross_attention_dim: int, spelling: str) -> dict:
    """A UNet attn2.to_k LoRA (and a first text encoder's q_proj) in diffusers' or PEFT's spelling."""
    down, up = {"diffusers": ("lora.down", "lora.up"), "peft": ("lora_A", "lora_B")}[spelling]
    te_down, te_up = {"diffusers": ("lora_linear_layer.down", "lora_linear_layer.up"), "peft": (down, up)}[spelling]
    unet = "unet.down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k"
    te = "text_encoder.text_model.encoder.layers.0.self_attn.q_proj"
    generator = torch.Generator().manual_seed(0)
    return {
        f"{unet}.{down}.weight": torch.randn(4, cross_attention_dim, generator=generator),
        f"{unet}.{up}.weight": torch.randn(64, 4, generator=generator),
        f"{te}.{te_down}.weight": torch.randn(4, 32, generator=generator),
        f"{te}.{te_up}.weight": torch.randn(32, 4, generator=generator),
    }


@pytest.mark.parametrize("spelling", ["diffusers", "peft"])
def test_family_guessed_from_weights_picks_modelspec_and_sdxl_prefixes(spelling, tmp_path):
    """No --family and no header: the cross-attention width names the family, in diffusers' and PEFT's key
    spellings, and an SDXL LoRA adapting only the first text encoder still gets SDXL's lora_te1_ prefix."""
    from hfvision.conversion.lora import convert_lora, diffusers_to_kohya, guess_family

    assert [guess_family(_synthetic_lora(width, spelling)) for width in (768, 2048, 1024)] == ["sd1", "sdxl", None]
    assert guess_family(diffusers_to_kohya(_synthetic_lora(2048, spelling), sdxl=True)) == "sdxl"
    for width, family, prefix in ((2048, "sdxl", "lora_te1_"), (768, "sd1", "lora_te_")):
        source = tmp_path / f"{spelling}-{width}.safetensors"
        save_file(_synthetic_lora(width, spelling), source)
        out = convert_lora(source, tmp_path / f"{spelling}-{width}-kohya.safetensors", to="kohya")
        assert {k.split("text_model")[0] for k in load_file(out) if "text_model" in k} == {prefix}
        assert (
            header(out)["modelspec.architecture"]
            == modelspec_metadata(family, title="t", trigger_phrase=None, resolution=None, base_model=None, lora=True)[
                "modelspec.architecture"
            ]
        )
