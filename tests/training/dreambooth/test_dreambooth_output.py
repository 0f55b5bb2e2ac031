"""What a full run saves: a base model's safety checker is kept (as diffusers' DreamBooth script does), and after
the trainer's push a fresh process without hfvision loads the model with stock diffusers."""

from __future__ import annotations

import hashlib
import inspect
import json

import numpy as np
import pytest

from hfvision.pipelines.dreambooth import DreamBoothPipeline

# The rewritten DreamBoothPipeline (issue 14, branch wa-pipeline) takes every SD component; the older one drops
# the safety checker when the trainer builds the saved pipeline from the base's components.
KEEPS_SAFETY_CHECKER = "safety_checker" in inspect.signature(DreamBoothPipeline.__init__).parameters


@pytest.fixture(scope="module")
def base_with_safety_checker(tmp_path_factory):
    from diffusers import StableDiffusionPipeline
    from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker
    from transformers import CLIPConfig, CLIPImageProcessor

    from hfvision.testing import tiny_sd_components

    tiny = dict(hidden_size=32, intermediate_size=37, num_attention_heads=4, num_hidden_layers=2)
    config = CLIPConfig(text_config=tiny, vision_config={**tiny, "image_size": 32, "patch_size": 4}, projection_dim=32)
    components = tiny_sd_components("sd1")
    components.update(
        safety_checker=StableDiffusionSafetyChecker(config).eval(),
        feature_extractor=CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}),
    )
    components.pop("image_encoder", None)
    out = tmp_path_factory.mktemp("sd1-with-safety-checker")
    StableDiffusionPipeline(**components).save_pretrained(out, safe_serialization=True)
    return out


@pytest.mark.xfail(not KEEPS_SAFETY_CHECKER, reason="needs issue 14's DreamBoothPipeline (wa-pipeline)", strict=True)
def test_saved_pipeline_keeps_the_base_safety_checker(base_with_safety_checker, tiny_kwargs, train_in_process):
    from diffusers import StableDiffusionPipeline

    kwargs = tiny_kwargs(pretrained_model_name_or_path=str(base_with_safety_checker), max_train_steps=1, resolution=32)
    _, result = train_in_process(kwargs)
    index = json.loads((result.output_dir / "model_index.json").read_text())
    assert index["safety_checker"] == ["stable_diffusion", "StableDiffusionSafetyChecker"]
    weights = "safety_checker/model.safetensors"

    def digest(folder):
        return hashlib.sha256((folder / weights).read_bytes()).hexdigest()

    assert digest(result.output_dir) == digest(base_with_safety_checker)  # the base's checker, byte for byte
    pipe = StableDiffusionPipeline.from_pretrained(result.output_dir)
    assert pipe.safety_checker is not None and pipe.feature_extractor is not None
    # dropping it is the stock diffusers call
    assert StableDiffusionPipeline.from_pretrained(result.output_dir, safety_checker=None).safety_checker is None


@pytest.mark.hub
@pytest.mark.slow
def test_pushed_model_loads_in_a_fresh_process_without_hfvision(tiny_kwargs, run_training, local_hub, run_python):
    from hfvision.testing import hub_env

    kwargs = tiny_kwargs(max_train_steps=1, resolution=32, push_to_hub=True, hub_model_id="user/sks-person")
    run_training(kwargs, env=hub_env(local_hub.endpoint))
    local = str(kwargs["output_dir"])
    code = f"""
        import json, sys
        sys.modules["hfvision"] = None  # this process cannot import hfvision
        import torch
        from diffusers import DiffusionPipeline
        from huggingface_hub import list_repo_files

        call = dict(num_inference_steps=2, height=32, width=32, output_type="np")
        local = DiffusionPipeline.from_pretrained({local!r})  # the output folder: diffusers' stock class name
        ours = DiffusionPipeline.from_pretrained("user/sks-person", trust_remote_code=True)  # the repo: one call
        try:
            DiffusionPipeline.from_pretrained("user/sks-person")
            refused = False
        except Exception as err:  # noqa: BLE001 - diffusers' own refusal of the repo's code
            refused = "trust_remote_code" in str(err)
        a = local("a photo of sks person", generator=torch.Generator().manual_seed(0), **call).images
        b = ours("a photo of {{token}} {{class}}", generator=torch.Generator().manual_seed(0), **call).images
        print(json.dumps({{"local": type(local).__name__, "ours": type(ours).__name__, "diff": float(abs(a - b).max()),
                          "token": ours.config.instance_token, "class": ours.config.class_noun, "refused": refused,
                          "files": sorted(list_repo_files("user/sks-person"))}}))
    """
    out = json.loads(run_python(code, hub=local_hub).strip().splitlines()[-1])
    assert out["local"] == "StableDiffusionPipeline" and out["ours"] == "DreamBoothPipeline"
    assert out["refused"]  # without trust_remote_code diffusers refuses the repo's code
    assert (out["token"], out["class"]) == ("sks", "person")
    assert {"handler.py", "requirements.txt", "dreambooth.py"} <= set(out["files"])
    assert out["diff"] <= 1e-6
    assert np.isfinite(out["diff"])
