"""The family table is the single source: every family named by the registry, trainer, conversion, ModelSpec,
ControlNets and test kit is one of its keys, and its facts agree with diffusers and with the tiny/bundled models."""

from __future__ import annotations

import inspect
import json
import subprocess
import sys

import pytest

from hfvision.models.families import (
    FAMILIES,
    FLOW_FAMILIES,
    MODELSPEC_ARCHITECTURES,
    UNET_FAMILIES,
    families_of_pipeline,
    family_from_unet_config,
    get_family,
)


def test_every_family_vocabulary_is_the_table():
    from hfvision import testing
    from hfvision.conversion import configs, keys, modelspec
    from hfvision.models import BASE_MODELS, CONTROLNETS, registry
    from hfvision.training.dreambooth import components

    assert list(FAMILIES) == ["sd1", "sd2", "sdxl", "flux", "sd3"]
    assert {m.family for m in BASE_MODELS.values()} == set(FAMILIES)  # every family has a registered checkpoint
    assert registry.FAMILIES is FAMILIES and components.FAMILIES is FAMILIES
    assert set(CONTROLNETS) == set(FAMILIES)
    assert {e.family for entries in CONTROLNETS.values() for e in entries.values()} <= set(FAMILIES)
    # single-file conversion covers exactly the UNet families, with one layout and one sentinel set each
    assert keys.FAMILIES == UNET_FAMILIES == ("sd1", "sd2", "sdxl")
    assert set(keys.LAYOUTS) == set(keys.FAMILY_SENTINELS) == set(UNET_FAMILIES)
    assert {b.family for b in configs.BASES.values()} == set(UNET_FAMILIES)
    assert set(testing.FAMILIES) == set(UNET_FAMILIES)
    # ModelSpec: one row per architecture of the table, every family reachable by its own name
    assert list(modelspec.ARCHITECTURES) == [a.key for a in MODELSPEC_ARCHITECTURES]
    assert {a.family for a in MODELSPEC_ARCHITECTURES} == set(FAMILIES)
    for name, family in FAMILIES.items():
        spec = modelspec.ARCHITECTURES[modelspec.resolve_family(name)]
        assert spec.architecture == family.modelspec[0].architecture
        assert spec.implementation == family.modelspec_implementation


@pytest.mark.parametrize("name", list(FAMILIES))
def test_family_record_matches_diffusers_and_hfvision_pipelines(name):
    import diffusers

    from hfvision.models.loading import hfvision_pipeline_class

    family = get_family(name)
    stock = getattr(diffusers, family.pipeline_class)
    parameters = inspect.signature(stock.__init__).parameters
    for component in ("vae", "scheduler", family.denoiser, *family.text_encoders, *family.tokenizers):
        assert component in parameters, f"{family.pipeline_class} has no {component}"
    assert f"text_encoder_{family.num_text_encoders + 1}" not in parameters  # no encoder left out
    assert ("safety_checker" in parameters) is family.safety_checker
    assert issubclass(hfvision_pipeline_class(family.dreambooth_pipeline_class), stock)
    for other in family.pipeline_classes[2:]:
        assert hasattr(diffusers, other)
    assert family.flow is (name in FLOW_FAMILIES) is (family.denoiser == "transformer")
    assert family.resolution_factor == (16 if family.flow else 8)
    assert 0 < family.trainable_text_encoders <= family.num_text_encoders
    assert family.resolution in {a.resolution for a in family.modelspec}


def test_pipeline_classes_name_their_families():
    assert families_of_pipeline("StableDiffusionPipeline") == ("sd1", "sd2")
    assert families_of_pipeline("DreamBoothXLPipeline") == ("sdxl",)
    assert families_of_pipeline("StableDiffusion3Pipeline") == ("sd3",)
    assert families_of_pipeline("KandinskyPipeline") == ()
    with pytest.raises(ValueError, match="family='sd' is not one of sd1, sd2, sdxl, flux, sd3"):
        get_family("sd")


@pytest.mark.parametrize("family", UNET_FAMILIES)
def test_unet_traits_tell_the_tiny_and_the_real_models_apart(family):
    from hfvision.conversion.configs import CONFIG_ROOT, DEFAULT_BASE, bundled_configs
    from hfvision.models.controlnets import controlnet_family
    from hfvision.testing import tiny_controlnet, tiny_unet

    assert family_from_unet_config(tiny_unet(family).config) == family
    assert family_from_unet_config(tiny_controlnet(family).config) == family
    real = bundled_configs(DEFAULT_BASE[family])["unet"]  # the published diffusers config of the family's base
    assert CONFIG_ROOT.is_dir() and family_from_unet_config(real) == family
    assert real["cross_attention_dim"] == get_family(family).cross_attention_dim
    assert controlnet_family({"_class_name": "ControlNetModel", **real}) == family


def test_importing_the_table_loads_no_framework():
    code = (
        "import sys, hfvision.models.families as f, hfvision.models.registry, hfvision.conversion.keys; "
        "print(sorted(m for m in ('torch', 'diffusers', 'transformers') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert json.loads(out.replace("'", '"')) == []
