"""diffusers dir -> single file -> diffusers dir: exact weights, identical images, the real original layout."""

from __future__ import annotations

import json

import pytest
import torch
from conversion_helpers import generate
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from hfvision.conversion import compare_pipelines, detect_family, from_single_file, to_single_file
from hfvision.conversion.keys import LAYOUTS
from hfvision.conversion.mapping import normalize_clip_keys

PREDICTION = {"sd1": "epsilon", "sd2": "v_prediction", "sdxl": "epsilon"}


def _diffusers_text_encoder_state(model, checkpoint: dict, prefix: str, kind: str) -> dict:
    """What diffusers' own original->diffusers text-encoder converters make of ``checkpoint``."""
    from diffusers.loaders import single_file_utils as sfu

    if kind == "clip":
        converted = sfu.convert_ldm_clip_checkpoint(checkpoint)
    else:
        converted = sfu.convert_open_clip_checkpoint(model, checkpoint, prefix=prefix)
    return normalize_clip_keys(converted)


@pytest.mark.parametrize("family", ["sd1", "sd2", "sdxl"])
def test_round_trip_is_exact(family, single_file, reference_pipeline, loaded_pipeline):
    path = single_file(family)
    reference, loaded = reference_pipeline(family), loaded_pipeline(family)

    # 0 missing / unexpected keys and max weight difference 0 for every component
    results = compare_pipelines(reference, loaded)
    expected = {"unet", "vae", "text_encoder"} | ({"text_encoder_2"} if family == "sdxl" else set())
    assert set(results) == expected
    for name, result in results.items():
        assert result.exact, (name, result)
    assert loaded.scheduler.config.prediction_type == PREDICTION[family]
    assert type(loaded.scheduler) is type(reference.scheduler)
    assert loaded.tokenizer("a photo of sks").input_ids == reference.tokenizer("a photo of sks").input_ids

    # identical images with the same seed
    assert (generate(reference) == generate(loaded)).all()

    # family and prediction type are read back from the file
    assert detect_family(path) == (family, PREDICTION[family])


@pytest.mark.parametrize("family", ["sd1", "sd2", "sdxl"])
def test_layout_is_the_one_diffusers_converters_read(family, single_file, reference_pipeline):
    """Convert our file with diffusers' original->diffusers functions (what its from_single_file and the
    community loaders rely on) and compare with the original components, tensor by tensor."""
    from diffusers.loaders import single_file_utils as sfu

    checkpoint = load_file(single_file(family))
    reference = reference_pipeline(family)
    prefixes = tuple(prefix for prefix, _ in LAYOUTS[family].values())
    assert all(k.startswith(prefixes) for k in checkpoint)
    # (diffusers' family detection needs real widths/depths; tests/conversion/test_conversion_keys.py checks it)

    unet = sfu.convert_ldm_unet_checkpoint(checkpoint, dict(reference.unet.config))
    vae = sfu.convert_ldm_vae_checkpoint(checkpoint, dict(reference.vae.config))
    pairs = [(unet, reference.unet.state_dict()), (vae, reference.vae.state_dict())]
    for name in [n for n in ("text_encoder", "text_encoder_2") if n in LAYOUTS[family]]:
        prefix, kind = LAYOUTS[family][name]
        model = getattr(reference, name)
        converted = _diffusers_text_encoder_state(model, checkpoint, prefix, kind)
        pairs.append((converted, normalize_clip_keys(model.state_dict())))
    for converted, original in pairs:
        assert converted.keys() == original.keys()
        for key, value in original.items():
            assert torch.equal(converted[key], value), key
    # the VAE's mid-block attention is stored as 1x1 convolutions, like the original checkpoints
    assert checkpoint["first_stage_model.encoder.mid.attn_1.q.weight"].ndim == 4


def test_header_metadata(single_file):
    with safe_open(single_file("sd2"), "pt") as f:
        meta = f.metadata()
    assert meta["hfvision.family"] == "sd2"
    assert meta["hfvision.trigger_word"] == meta["modelspec.trigger_phrase"] == "sks"
    assert meta["modelspec.architecture"] == "stable-diffusion-v2-768-v"
    assert meta["modelspec.prediction_type"] == "v"
    assert meta["modelspec.resolution"] == "64x64"
    configs = json.loads(meta["hfvision.diffusers_configs"])
    assert configs["unet"]["use_linear_projection"] is True
    assert set(configs) >= {"unet", "vae", "text_encoder", "scheduler", "tokenizer", "model_index"}


def test_ckpt_format_and_out_dir(tiny_model_dir, single_file, tmp_path):
    path = to_single_file(tiny_model_dir("sd1"), tmp_path / "model.ckpt")
    checkpoint = torch.load(path, weights_only=True)
    safetensors_state = load_file(single_file("sd1"))
    assert checkpoint["state_dict"].keys() == safetensors_state.keys()
    assert all(torch.equal(checkpoint["state_dict"][k], v) for k, v in safetensors_state.items())
    assert checkpoint["hfvision_metadata"]["hfvision.family"] == "sd1"
    assert detect_family(path) == ("sd1", "epsilon")

    out = from_single_file(path, tmp_path / "diffusers")
    assert out == tmp_path / "diffusers" and not list(tmp_path.glob(".diffusers*"))
    for component, weights in [
        ("unet", "diffusion_pytorch_model"),
        ("vae", "diffusion_pytorch_model"),
        ("text_encoder", "model"),
    ]:
        written = load_file(out / component / f"{weights}.safetensors")
        original = load_file(tiny_model_dir("sd1") / component / f"{weights}.safetensors")
        assert written.keys() == original.keys()
        assert all(torch.equal(written[k], v) for k, v in original.items()), component
    assert json.loads((out / "scheduler" / "scheduler_config.json").read_text())["prediction_type"] == "epsilon"
    with pytest.raises(FileExistsError, match="not empty"):
        from_single_file(path, out)


def test_file_without_header_loads_with_a_local_config(single_file, tiny_model_dir, reference_pipeline, tmp_path):
    # as other tools write it: no hfvision header, plus keys real checkpoints carry that are not model weights
    state = load_file(single_file("sd1"))
    state["cond_stage_model.transformer.text_model.embeddings.position_ids"] = torch.arange(77)[None]
    state["alphas_cumprod"] = torch.linspace(1, 0, 1000)
    bare = tmp_path / "bare.safetensors"
    save_file(state, bare)
    assert detect_family(bare) == ("sd1", None)
    loaded = from_single_file(bare, config=tiny_model_dir("sd1"))
    assert all(r.exact for r in compare_pipelines(reference_pipeline("sd1"), loaded).values())
    # without a config it falls back to the bundled SD 1.5 configs, which do not fit a tiny UNet
    with pytest.raises(ValueError, match="bundled sd15 config expects"):
        from_single_file(bare)


def test_prediction_type_override(single_file):
    pipe = from_single_file(single_file("sd2"), prediction_type="epsilon")
    assert pipe.scheduler.config.prediction_type == "epsilon"


def test_pipeline_object_input(reference_pipeline, single_file, tmp_path):
    path = to_single_file(reference_pipeline("sd1"), tmp_path / "from-object.safetensors")
    a, b = load_file(path), load_file(single_file("sd1"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow
def test_diffusers_alone_mixes_up_equal_width_sdxl_encoders(single_file, reference_pipeline, tmp_path):
    """Canary for the diffusers behaviour hfvision works around: with both SDXL text encoders of the same width,
    diffusers' from_single_file fills text_encoder_2 from conditioner.embedders.0. If this starts failing, the
    workaround in hfvision.conversion.loading can go."""
    from diffusers import StableDiffusionXLPipeline

    from hfvision.conversion.configs import write_config_dir

    with safe_open(single_file("sdxl"), "pt") as f:
        configs = json.loads(f.metadata()["hfvision.diffusers_configs"])
    config_dir = write_config_dir(configs, "sdxl", tmp_path / "config")
    pipe = StableDiffusionXLPipeline.from_single_file(
        str(single_file("sdxl")), config=str(config_dir), local_files_only=True
    )
    expected = reference_pipeline("sdxl").text_encoder_2.text_model.embeddings.token_embedding.weight
    first = reference_pipeline("sdxl").text_encoder.embeddings.token_embedding.weight
    got = pipe.text_encoder_2.text_model.embeddings.token_embedding.weight
    assert torch.equal(got, first) and not torch.equal(got, expected)


def test_dreambooth_pipeline_records_its_trigger_word(reference_pipeline, single_file, tmp_path):
    """The trainer's output (a DreamBoothPipeline) converts with its identifier written into the header."""
    from hfvision.pipelines.dreambooth import DreamBoothPipeline

    pipe = DreamBoothPipeline.from_components(reference_pipeline("sd1"), instance_token="zwx", class_noun="dog")
    path = to_single_file(pipe, tmp_path / "dreambooth.safetensors")
    with safe_open(path, "pt") as f:
        meta = f.metadata()
    assert meta["modelspec.trigger_phrase"] == "zwx" and meta["hfvision.class_noun"] == "dog"
    a, b = load_file(path), load_file(single_file("sd1"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
