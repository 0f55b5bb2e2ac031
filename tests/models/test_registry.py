"""Base-model and ControlNet registries: one contract test over every entry, plus the validation messages."""

from __future__ import annotations

import dataclasses
import logging

import pytest

from hfvision.models import (
    BASE_MODELS,
    CONTROLNETS,
    get_base_model,
    get_controlnet,
    list_base_models,
    list_controlnets,
    validate_training_resolution,
)
from hfvision.models.loading import HFVISION_PIPELINES, SUBCLASSED_PIPELINES, hfvision_pipeline_class
from hfvision.models.registry import FAMILIES, FLOW_FAMILIES, RESOLUTION_FACTORS


@pytest.mark.parametrize("key", sorted(BASE_MODELS))
def test_base_model_entry_contract(key):
    import diffusers

    model = get_base_model(key)
    assert model.key == key and model.family in FAMILIES
    assert model.repo_id.count("/") == 1 and model.revision and model.revision_note
    assert model.revision == "main" or len(model.revision) == 40 and int(model.revision, 16) >= 0
    assert model.resolution in model.training_resolutions
    assert model.prediction_type in ("epsilon", "v_prediction", "flow_matching")
    if model.pipeline_class in HFVISION_PIPELINES:  # hfvision's DreamBooth subclass of the family's diffusers pipeline
        cls = hfvision_pipeline_class(model.pipeline_class)
        parent = {ours: theirs for theirs, ours in SUBCLASSED_PIPELINES.items()}[model.pipeline_class]
        assert issubclass(cls, getattr(diffusers, parent))
    else:
        cls = getattr(diffusers, model.pipeline_class)
    assert issubclass(cls, diffusers.DiffusionPipeline)
    assert validate_training_resolution(key, model.resolution) == model.resolution
    assert all(r % RESOLUTION_FACTORS[model.family] == 0 for r in model.training_resolutions)
    assert (model.family in FLOW_FAMILIES) is (model.prediction_type == "flow_matching")
    assert (model.family in FLOW_FAMILIES) is (model.max_sequence_length is not None)
    if model.family != "sd3":  # no SD3.5 ControlNets in the ControlNet registry yet
        assert list_controlnets(key), f"no ControlNets registered for {model.family}"
    with pytest.raises(dataclasses.FrozenInstanceError):
        model.resolution = 1  # type: ignore[misc]


def test_required_entries_and_their_traits():
    assert {"sd15", "sd21-base", "sd21", "sdxl", "flux-schnell", "flux-dev"} <= set(list_base_models())
    traits = {k: (m.family, m.resolution, m.prediction_type) for k, m in BASE_MODELS.items()}
    assert traits["sd15"] == ("sd1", 512, "epsilon")
    assert traits["sd21-base"] == ("sd2", 512, "epsilon")
    assert traits["sd21"] == ("sd2", 768, "v_prediction")
    assert traits["sdxl"] == ("sdxl", 1024, "epsilon")
    assert list_base_models("sd2") == ["sd21", "sd21-base"]


def test_flow_entries_sd35_and_flux():
    from diffusers import FluxPipeline, StableDiffusion3Pipeline

    assert list_base_models("sd3") == ["sd35-large", "sd35-medium"]
    assert list_base_models("flux") == ["flux-dev", "flux-schnell"]
    for key, size in (("sd35-medium", "medium"), ("sd35-large", "large")):
        model = get_base_model(key)
        assert model.repo_id == f"stabilityai/stable-diffusion-3.5-{size}" and model.revision == "main"
        assert "no verified commit" in model.revision_note
        assert (model.license, model.resolution, model.gated) == ("stabilityai-ai-community", 1024, True)
        assert issubclass(hfvision_pipeline_class(model.pipeline_class), StableDiffusion3Pipeline)
    dev, schnell = get_base_model("flux-dev"), get_base_model("flux-schnell")
    assert (dev.max_sequence_length, dev.guidance_embeds) == (512, True)
    assert (schnell.max_sequence_length, schnell.guidance_embeds) == (256, False)
    assert dev.license == "flux-1-dev-non-commercial-license" and schnell.license == "apache-2.0"
    for model in (dev, schnell):
        assert issubclass(hfvision_pipeline_class(model.pipeline_class), FluxPipeline)


def test_flow_resolutions_are_multiples_of_16():
    assert validate_training_resolution("flux-dev", 512) == 512
    with pytest.raises(ValueError, match=r"resolution=1000 must be a positive multiple of 16 for flux .*992 or 1008"):
        validate_training_resolution("flux-dev", 1000, allow_override=True)
    with pytest.raises(ValueError, match=r"multiple of 16 for sd3 \(VAE 8 x patch 2\); try 1008 or 1024"):
        validate_training_resolution("sd35-large", 1016)
    assert validate_training_resolution("sdxl", 1016, allow_override=True) == 1016  # the UNet families need 8


def test_resolution_refused_with_the_right_choice(caplog):
    with pytest.raises(ValueError) as err:
        validate_training_resolution("sd15", 768)
    message = str(err.value)
    assert "resolution=768" in message and "use 512" in message and "'sd21', which is native 768 px" in message
    assert "allow_override=True" in message
    with caplog.at_level(logging.WARNING, logger="hfvision"):
        assert validate_training_resolution("sd15", 768, allow_override=True) == 768
    assert "continuing: allow_override=True" in caplog.text
    with pytest.raises(ValueError, match="multiple of 8; try 496 or 504"):
        validate_training_resolution("sd15", 500, allow_override=True)
    with pytest.raises(ValueError, match="native 1024 px"):
        validate_training_resolution("sdxl", 512)


def test_unknown_keys_suggest_the_closest():
    with pytest.raises(ValueError, match="unknown base model 'sd1.5'; did you mean 'sd15'"):
        get_base_model("sd1.5")
    with pytest.raises(ValueError, match="did you mean 'sdxl'"):
        validate_training_resolution("sd-xl", 1024)
    with pytest.raises(ValueError, match="did you mean 'flux-dev'"):
        list_controlnets("flux_dev")


@pytest.mark.parametrize("family", ["sd1", "sd2", "sdxl", "flux"])
def test_controlnet_entries_contract(family):
    import diffusers

    entries = CONTROLNETS[family]
    assert entries and "canny" in entries
    for name, entry in entries.items():
        assert entry.name == name and entry.family == family and entry.repo_id.count("/") == 1
        assert hasattr(diffusers, entry.model_class) and hasattr(diffusers, entry.pipeline_class)
    assert list_controlnets(family) == sorted(entries)


def test_controlnet_lists_and_cross_family_names():
    assert {"canny", "depth", "openpose", "scribble", "lineart", "softedge", "seg", "tile", "inpaint"} <= set(
        list_controlnets("sd15")
    )
    assert (
        list_controlnets("sd21") == list_controlnets("sd21-base") == ["canny", "depth", "hed", "openpose", "scribble"]
    )
    assert get_controlnet("canny", "sdxl").repo_id == "diffusers/controlnet-canny-sdxl-1.0"
    assert get_controlnet("canny", "flux-dev").model_class == "FluxControlNetModel"
    with pytest.raises(ValueError, match=r"no ControlNet 'tile' for 'sdxl' \(it exists for sd1, not sdxl\)"):
        get_controlnet("tile", "sdxl")
    with pytest.raises(ValueError, match="did you mean 'canny'"):
        get_controlnet("cany", "sd15")
