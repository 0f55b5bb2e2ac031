"""`load_pipeline` for the flow-matching families: Flux.1 / SD3 folders, repos and registry keys load as hfvision's
DreamBooth subclasses (local stand-ins only; the registry keys resolve through the local Hub server)."""

from __future__ import annotations

import pytest
import torch


def _same_weights(a, b) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_pipeline_class_for_flow_model_indexes():
    from diffusers import DiffusionPipeline

    from hfvision.models.loading import pipeline_class_for
    from hfvision.pipelines.dreambooth_flux import DreamBoothFluxPipeline
    from hfvision.pipelines.dreambooth_sd3 import DreamBoothSD3Pipeline

    assert pipeline_class_for({"_class_name": "FluxPipeline"}) is DreamBoothFluxPipeline
    assert pipeline_class_for({"_class_name": "StableDiffusion3Pipeline"}) is DreamBoothSD3Pipeline
    # saved by hfvision for one-call remote-code loading: hfvision's class, no remote code needed
    assert pipeline_class_for({"_class_name": ["dreambooth_sd3", "DreamBoothSD3Pipeline"]}) is DreamBoothSD3Pipeline
    # the same class name shipped in another module is someone else's code
    with pytest.raises(ValueError, match=r"custom code \(evil\.py\); pass trust_remote_code=True"):
        pipeline_class_for({"_class_name": ["evil", "DreamBoothFluxPipeline"]})
    assert pipeline_class_for({"_class_name": ["evil", "DreamBoothFluxPipeline"]}, True) is DiffusionPipeline
    assert pipeline_class_for({"_class_name": "StableDiffusionXLPipeline"}) is DiffusionPipeline


def test_load_pipeline_flow_directories(tmp_path):
    from hfvision.models import load_pipeline
    from hfvision.pipelines.dreambooth_flux import DreamBoothFluxPipeline
    from hfvision.pipelines.dreambooth_sd3 import DreamBoothSD3Pipeline
    from hfvision.testing import save_tiny_flux, tiny_sd3_pipeline

    stock_dir = save_tiny_flux(tmp_path / "flux", "schnell")  # diffusers' FluxPipeline layout
    flux = load_pipeline(stock_dir)
    assert type(flux) is DreamBoothFluxPipeline and flux.config.family == "flux" and flux.instance_token is None
    assert not flux.transformer.config.guidance_embeds

    base = tiny_sd3_pipeline("sd3")
    DreamBoothSD3Pipeline.from_components(base, instance_token="zwx", class_noun="cat").save_pretrained(
        tmp_path / "db"
    )
    sd3 = load_pipeline(tmp_path / "db")  # no trust_remote_code: it is hfvision's own class
    assert type(sd3) is DreamBoothSD3Pipeline and (sd3.instance_token, sd3.class_noun) == ("zwx", "cat")
    assert _same_weights(sd3.transformer, base.transformer) and _same_weights(sd3.text_encoder_3, base.text_encoder_3)


REGISTRY = """
import torch
from hfvision.models import get_base_model, load_pipeline
from hfvision.testing import tiny_flux_pipeline, tiny_sd3_pipeline

# the local Hub stands in for the real repos; the pinned Flux revisions do not exist there, hence revision="main"
stand_ins = {"flux-dev": tiny_flux_pipeline("dev"), "flux-schnell": tiny_flux_pipeline("schnell"),
             "sd35-medium": tiny_sd3_pipeline("sd3.5")}
for key, pipe in stand_ins.items():
    pipe.push_to_hub(get_base_model(key).repo_id)
for key, pipe in stand_ins.items():
    loaded = load_pipeline(key, revision="main")
    sd, ld = pipe.transformer.state_dict(), loaded.transformer.state_dict()
    same = sd.keys() == ld.keys() and all(torch.equal(sd[k], ld[k]) for k in sd)
    print(key, type(loaded).__name__, loaded.config.family, loaded.transformer.config.get("guidance_embeds"), same)
"""


@pytest.mark.hub
def test_load_pipeline_flow_registry_keys(local_hub, run_python):
    lines = [line.split() for line in run_python(REGISTRY, hub=local_hub).splitlines()]
    assert lines == [
        ["flux-dev", "DreamBoothFluxPipeline", "flux", "True", "True"],
        ["flux-schnell", "DreamBoothFluxPipeline", "flux", "False", "True"],
        ["sd35-medium", "DreamBoothSD3Pipeline", "sd3", "None", "True"],
    ]
