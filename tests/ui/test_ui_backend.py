"""The UI's work without a browser: generation (with ControlNet) equals diffusers' pipelines, family/size lookup,
request validation, face boxes drawn."""

from __future__ import annotations

import numpy as np
import pytest

from hfvision.ui.backend import (
    NO_CONTROLNET,
    ClassifyBackend,
    GenerateBackend,
    GenerateRequest,
    canny_preview,
    controlnet_choices,
    default_size,
    draw_results,
    model_family,
)


def test_family_size_and_controlnet_choices(tiny_model_dir, tmp_path):
    import json

    from hfvision.models import list_controlnets

    assert model_family("sd15") == "sd1" and model_family("sdxl") == "sdxl" and model_family(None) is None
    assert model_family(str(tiny_model_dir("sd1"))) == "sd1"
    (tmp_path / "unet").mkdir()
    (tmp_path / "unet" / "config.json").write_text(json.dumps({"use_linear_projection": True}))
    assert model_family(str(tmp_path)) == "sd2"
    assert default_size("sd21") == 768 and default_size(str(tiny_model_dir("sd1"))) == 64
    assert default_size("no/such-model") == 512
    assert controlnet_choices("sdxl", ["/my/cn"]) == [NO_CONTROLNET, *list_controlnets("sdxl"), "/my/cn"]
    assert controlnet_choices("https://example.com/model.safetensors") == [NO_CONTROLNET]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"model": ""}, "choose a model"),
        ({"prompt": " "}, "write a prompt"),
        ({"width": 100}, "try 96 or 104"),
        ({"num_images": 0}, "between 1 and 16"),
        ({"controlnet": "canny"}, "needs a control image"),
    ],
)
def test_request_validation(kwargs, message):
    with pytest.raises(ValueError, match=message):
        GenerateRequest(**{"model": "sd15", "prompt": "a cat", **kwargs})


def test_generate_matches_diffusers(tiny_model_dir, tmp_path, reference_images):
    import functools
    import json

    from diffusers import ControlNetModel, StableDiffusionControlNetPipeline, StableDiffusionPipeline

    from hfvision.testing import sample_image

    sd_dir, cn_dir = str(tiny_model_dir("sd1")), str(tiny_model_dir("controlnet-sd1"))
    backend = GenerateBackend(output_dir=str(tmp_path))
    steps = []
    # the settings reference_images uses: 2 steps at 64x64
    tiny_request = functools.partial(GenerateRequest, model=sd_dir, num_inference_steps=2, width=64, height=64)
    request = tiny_request(prompt="a photo of {token} {class}", token="sks", class_noun="dog", seed=5, num_images=2)
    images, paths, seed = backend.generate(request, progress=lambda step, total: steps.append((step, total)))
    assert seed == 5 and steps == [(1, 2), (2, 2)] and len(images) == 2
    reference = StableDiffusionPipeline.from_pretrained(sd_dir)
    reference.set_progress_bar_config(disable=True)
    want = reference_images(reference, "a photo of sks dog", 5, num_images_per_prompt=2)
    for image, path, expected in zip(images, paths, want):
        np.testing.assert_array_equal(np.asarray(image), np.asarray(expected))
        from PIL import Image

        np.testing.assert_array_equal(np.asarray(Image.open(path)), np.asarray(expected))  # the download is the image

    # ControlNet: the Canny condition of an uploaded photo drives a local tiny ControlNet
    condition = canny_preview(sample_image("rocket"), 50, 150)
    request = tiny_request(prompt="a rocket", seed=1, controlnet=cn_dir, control_image=condition, controlnet_scale=0.7)
    (image,), _, _ = backend.generate(request)
    controlnet = ControlNetModel.from_pretrained(cn_dir)
    peer = StableDiffusionControlNetPipeline(**{**reference.components, "controlnet": controlnet})
    peer.set_progress_bar_config(disable=True)
    (expected,) = reference_images(
        peer, "a rocket", 1, image=condition.resize((64, 64)), controlnet_conditioning_scale=0.7
    )
    np.testing.assert_array_equal(np.asarray(image), np.asarray(expected))
    other = tmp_path / "sdxl-controlnet"  # same ControlNet, but with SDXL-like text width: must be refused
    other.mkdir()
    config = json.loads((tiny_model_dir("controlnet-sd1") / "config.json").read_text())
    (other / "config.json").write_text(json.dumps({**config, "cross_attention_dim": 64}))
    with pytest.raises(ValueError, match="does not fit"):
        backend.with_controlnet(backend.pipeline(sd_dir), str(tmp_path / "sdxl-controlnet"))


def test_classify_and_draw(tiny_model_dir, tmp_path):
    from hfvision.testing import sample_image

    photo = tmp_path / "astronaut.png"
    sample_image("astronaut").save(photo)
    backend = ClassifyBackend(model=str(tiny_model_dir("vit")))
    image, top, results = backend.classify(photo, faces=True, top_k=2)
    assert len(results) == 1 and top == {r["label"]: r["score"] for r in results[0]["labels"]}
    box = results[0]["box"]
    original = np.asarray(sample_image("astronaut"))
    drawn = np.asarray(image)
    changed = np.argwhere((drawn != original).any(-1))
    ys, xs = changed[:, 0], changed[:, 1]
    # pixels changed only on the box outline and its label tag above it
    assert xs.min() >= box["xmin"] - 1 and ys.max() <= box["ymax"] + 1
    assert (
        drawn[box["ymin"] + 2, box["xmin"] : box["xmax"]] != original[box["ymin"] + 2, box["xmin"] : box["xmax"]]
    ).any()
    image, top, results = backend.classify(photo, faces=False, top_k=1)
    assert len(top) == 1 and np.array_equal(np.asarray(image), original)
    assert draw_results(sample_image("chelsea"), []).size == sample_image("chelsea").size
    with pytest.raises(ValueError, match="choose a classifier"):
        ClassifyBackend().classify(photo)


def test_ui_flags_mirror_config_and_missing_gradio_fails_softly(monkeypatch):
    from hfvision.cli import ui
    from hfvision.ui.app import UIConfig, build_app
    from hfvision.utils import import_utils

    config = ui.parse(["--model", "sd15", "--port", "7000", "--steps", "4"])
    assert config == UIConfig(model="sd15", port=7000, steps=4) and config.host == "127.0.0.1"
    with pytest.raises(ValueError, match="size=100 must be a multiple of 8"):
        UIConfig(size=100)
    monkeypatch.setattr(import_utils, "is_available", lambda module: module != "gradio")
    with pytest.raises(ImportError, match=r"needs the 'gradio' package.*hfvision\[ui\]"):
        build_app(config)


def test_flow_model_family_size_and_no_controlnets(tmp_path):
    """Flux.1 / SD3 folders: family from the transformer, default size = the stock pipeline's default, no ControlNets
    offered (the tab drives UNet ControlNets only)."""
    from diffusers import FluxPipeline, StableDiffusion3Pipeline

    from hfvision.testing import save_tiny_flux, save_tiny_sd3

    flux, sd3 = save_tiny_flux(tmp_path / "flux"), save_tiny_sd3(tmp_path / "sd3")
    assert (model_family(str(flux)), model_family(str(sd3))) == ("flux", "sd3")
    for folder, cls in ((flux, FluxPipeline), (sd3, StableDiffusion3Pipeline)):
        pipe = cls.from_pretrained(folder)
        assert default_size(str(folder)) == pipe.default_sample_size * pipe.vae_scale_factor
    assert controlnet_choices("flux-dev") == controlnet_choices(str(sd3)) == [NO_CONTROLNET]
