"""Each tiny component builds, saves and reloads with identical weights and outputs."""

import numpy as np
import pytest
import torch

from hfvision import testing as t


def _assert_same_state(a: torch.nn.Module, b: torch.nn.Module):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


def test_tiny_vit_reloads_identically(tmp_path):
    from transformers import AutoImageProcessor, AutoModelForImageClassification

    model, _ = t.tiny_vit_classifier()
    t.save_tiny_vit_classifier(tmp_path)
    loaded = AutoModelForImageClassification.from_pretrained(tmp_path)
    _assert_same_state(model, loaded)
    assert loaded.config.id2label == {0: "female", 1: "male"}
    processor = AutoImageProcessor.from_pretrained(tmp_path)
    pixel_values = processor(t.sample_image("astronaut"), return_tensors="pt").pixel_values
    assert pixel_values.shape == (1, 3, 64, 64)
    with torch.inference_mode():
        torch.testing.assert_close(model(pixel_values).logits, loaded(pixel_values).logits, rtol=0, atol=0)


def test_tiny_vit_is_seeded():
    a, _ = t.tiny_vit_classifier(seed=1)
    b, _ = t.tiny_vit_classifier(seed=1)
    c, _ = t.tiny_vit_classifier(seed=2)
    _assert_same_state(a, b)
    assert not torch.equal(a.classifier.weight, c.classifier.weight)


def test_tiny_timm_resnet_loads_with_timm_and_timm_wrapper(tmp_path):
    import timm
    from transformers import AutoImageProcessor, AutoModelForImageClassification

    t.save_tiny_timm_resnet(tmp_path, num_classes=10)
    reference = t.tiny_timm_resnet(num_classes=10)
    via_timm = timm.create_model(f"local-dir:{tmp_path}", pretrained=True).eval()
    via_wrapper = AutoModelForImageClassification.from_pretrained(tmp_path).eval()
    _assert_same_state(reference, via_timm)
    processor = AutoImageProcessor.from_pretrained(tmp_path)
    # preprocessing comes from resnet18.a1_in1k's data config, not ImageNet defaults hard-coded here
    assert processor.data_config["crop_pct"] == 0.95 and processor.data_config["interpolation"] == "bicubic"
    x = processor(t.sample_image("chelsea"), return_tensors="pt")["pixel_values"]
    assert x.shape == (1, 3, 224, 224)
    with torch.inference_mode():
        torch.testing.assert_close(via_wrapper(x).logits, reference(x), rtol=0, atol=1e-6)


@pytest.mark.parametrize("family", t.FAMILIES)
def test_tiny_sd_pipeline_saves_reloads_and_generates_identically(family, tmp_path):
    from diffusers import DiffusionPipeline

    pipe = t.tiny_sd_pipeline(family)
    pipe.save_pretrained(tmp_path)
    loaded = DiffusionPipeline.from_pretrained(tmp_path)
    assert type(loaded) is type(pipe)
    for name in ("unet", "vae", "text_encoder"):
        _assert_same_state(getattr(pipe, name), getattr(loaded, name))
    assert loaded.scheduler.config.prediction_type == ("v_prediction" if family == "sd2" else "epsilon")
    kwargs = dict(prompt="a photo of sks dog", num_inference_steps=2, height=64, width=64, output_type="np")
    a = pipe(**kwargs, generator=torch.Generator().manual_seed(0)).images
    b = loaded(**kwargs, generator=torch.Generator().manual_seed(0)).images
    assert a.shape == (1, 64, 64, 3)
    # identical weights; SDXL's reloaded CLIPTextModelWithProjection differs by float ulps (~2e-7) in pooling
    np.testing.assert_allclose(a, b, rtol=0, atol=0 if family != "sdxl" else 1e-5)


def test_tiny_sd_family_traits():
    sd1, sd2, sdxl = (t.tiny_sd_components(f) for f in t.FAMILIES)
    assert not sd1["unet"].config.use_linear_projection and sd2["unet"].config.use_linear_projection
    assert sdxl["unet"].config.addition_embed_type == "text_time"
    assert sdxl["unet"].config.cross_attention_dim == (
        sdxl["text_encoder"].config.hidden_size + sdxl["text_encoder_2"].config.hidden_size
    )
    assert sum(p.numel() for p in sd1["unet"].parameters()) < 2_000_000


def test_tiny_controlnet_runs_with_tiny_unet_and_reloads(tmp_path):
    from diffusers import ControlNetModel, StableDiffusionControlNetPipeline

    controlnet = t.tiny_controlnet("sd1")
    controlnet.save_pretrained(tmp_path)
    _assert_same_state(controlnet, ControlNetModel.from_pretrained(tmp_path))
    components = t.tiny_sd_components("sd1")
    components.pop("image_encoder")
    pipe = StableDiffusionControlNetPipeline(**components, controlnet=controlnet, requires_safety_checker=False)
    control = t.sample_image("astronaut").resize((64, 64))
    out = pipe(
        "a photo", image=control, num_inference_steps=2, output_type="np", generator=torch.Generator().manual_seed(0)
    ).images
    assert out.shape == (1, 64, 64, 3) and np.isfinite(out).all()


def test_sample_images():
    astronaut = t.sample_image("astronaut")
    assert astronaut.size == (512, 512) and astronaut.mode == "RGB"
    assert t.sample_image("china").size == (640, 427)
    with pytest.raises(ValueError, match="unknown sample image 'nope'"):
        t.sample_image("nope")
