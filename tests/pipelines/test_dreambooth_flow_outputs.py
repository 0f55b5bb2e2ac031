"""What the DreamBooth trainer writes for Flux.1 and SD3 loads through the stock diffusers call a user already knows,
in a fresh process that cannot import hfvision, and renders exactly what hfvision renders from the same files:

- a full fine-tune's output folder: ``DiffusionPipeline.from_pretrained(out)`` (diffusers' own class, no remote code);
- a LoRA output folder: ``FluxPipeline`` / ``StableDiffusion3Pipeline.from_pretrained(base).load_lora_weights(out)``;
- a Flux repo pushed by the trainer to the (local) Hub: ``DiffusionPipeline.from_pretrained(repo,
  trust_remote_code=True)`` returns the shipped DreamBooth class, which knows the trained token.

Each run: tiny seeded pipelines from `hfvision.testing`, 32 px, 2 training steps; images: 2 inference steps, seed 0.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.slow  # each test trains and starts a fresh interpreter: 20-60 s

STOCK = {"flux": "FluxPipeline", "sd3": "StableDiffusion3Pipeline"}
CALL = dict(height=32, width=32, num_inference_steps=2, output_type="np")
PROMPT = "a photo of sks person"


def _dreambooth_class(family):
    from hfvision.pipelines.dreambooth_flux import DreamBoothFluxPipeline
    from hfvision.pipelines.dreambooth_sd3 import DreamBoothSD3Pipeline

    return DreamBoothFluxPipeline if family == "flux" else DreamBoothSD3Pipeline


def _render(pipe, prompt=PROMPT):
    pipe.set_progress_bar_config(disable=True)
    return pipe(prompt, generator=torch.Generator().manual_seed(0), **CALL).images


@pytest.fixture(scope="module")
def bases(tmp_path_factory):
    """{family: saved tiny base pipeline folder} (Flux.1-dev, SD3)."""
    from hfvision.testing import save_tiny_flux, save_tiny_sd3

    return {
        "flux": save_tiny_flux(tmp_path_factory.mktemp("flux-base"), "dev"),
        "sd3": save_tiny_sd3(tmp_path_factory.mktemp("sd3-base")),
    }


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    from hfvision.testing import sample_image

    folder = tmp_path_factory.mktemp("photos")
    for name in ("astronaut", "coffee"):
        sample_image(name).resize((32, 32)).save(folder / f"{name}.png")
    return folder


def _train_kwargs(base, photos, output_dir, **overrides):
    return dict(
        pretrained_model_name_or_path=str(base),
        instance_data_dir=str(photos),
        instance_prompt="a photo of {token} person",
        resolution=32,
        train_batch_size=1,
        max_train_steps=2,
        learning_rate=1e-3,
        checkpointing_steps=100,
        report_to="none",
        seed=0,
        output_dir=str(output_dir),
        **overrides,
    )


def _train(**kwargs):
    from hfvision.training import DreamBoothConfig, DreamBoothTrainer

    return DreamBoothTrainer(DreamBoothConfig(**kwargs)).train()


# A fresh interpreter in which `import hfvision` fails; prints one JSON line.
FRESH = """
import json, sys
sys.modules["hfvision"] = None  # hfvision cannot be imported here
import numpy as np, torch
torch.set_num_threads(1)
import diffusers
call = dict(height=32, width=32, num_inference_steps=2, output_type="np")
def render(pipe, prompt):
    pipe.set_progress_bar_config(disable=True)
    return pipe(prompt, generator=torch.Generator().manual_seed(0), **call).images
report = {{}}
{body}
assert not any(m == "hfvision" or m.startswith("hfvision.") for m in sys.modules if sys.modules[m] is not None)
print(json.dumps(report))
"""


def _fresh(run_python, body, **kwargs):
    code = FRESH.format(body=body)
    return json.loads(run_python(code, **kwargs).strip().splitlines()[-1])


def test_full_finetune_outputs_load_with_stock_from_pretrained(bases, photos, tmp_path, run_python):
    expected, outputs = {}, {}
    for family, base in bases.items():
        out = tmp_path / f"{family}-full"
        result = _train(**_train_kwargs(base, photos, out))
        assert result.global_step == 2
        ours = _dreambooth_class(family).from_pretrained(out)
        assert ours.instance_token == "sks" and ours.class_noun == "person"
        expected[family], outputs[family] = _render(ours, "a photo of {token} {class}"), str(out)
        assert np.abs(expected[family] - _render(_dreambooth_class(family).from_pretrained(base))).max() > 1e-4
    body = f"""
for family, out in {outputs!r}.items():
    pipe = diffusers.DiffusionPipeline.from_pretrained(out)  # no trust_remote_code: the stock class
    np.save(family + ".npy", render(pipe, {PROMPT!r}))
    report[family] = [type(pipe).__name__, type(pipe).__module__.split(".")[0]]
"""
    report = _fresh(run_python, body)
    for family in bases:
        assert report[family] == [STOCK[family], "diffusers"]
        np.testing.assert_array_equal(np.load(tmp_path / f"{family}.npy"), expected[family])


def test_lora_outputs_load_with_stock_load_lora_weights(bases, photos, tmp_path, run_python):
    expected, outputs = {}, {}
    for family, base in bases.items():
        out = tmp_path / f"{family}-lora"
        _train(**_train_kwargs(base, photos, out, use_lora=True, rank=4))
        ours = _dreambooth_class(family).from_pretrained(base, instance_token="sks", class_noun="person")
        plain = _render(ours, "a photo of {token} {class}")
        ours.load_lora_weights(out)
        expected[family], outputs[family] = _render(ours, "a photo of {token} {class}"), str(out)
        assert np.abs(expected[family] - plain).max() > 1e-4  # the trained adapter changes the image
    body = f"""
for family, (base, out) in { ({f: (str(bases[f]), outputs[f]) for f in bases})!r}.items():
    stock = getattr(diffusers, {STOCK!r}[family])
    pipe = stock.from_pretrained(base)
    pipe.load_lora_weights(out)
    np.save(family + ".npy", render(pipe, {PROMPT!r}))
    report[family] = type(pipe).__name__
"""
    report = _fresh(run_python, body)
    for family in bases:
        assert report[family] == STOCK[family]
        np.testing.assert_array_equal(np.load(tmp_path / f"{family}.npy"), expected[family])


@pytest.mark.hub
def test_trainer_pushed_flux_repo_loads_in_one_call(bases, photos, tmp_path, local_hub, run_python):
    kwargs = _train_kwargs(
        bases["flux"], photos, tmp_path / "flux-pushed", push_to_hub=True, hub_model_id="user/flux-sks"
    )
    # the trainer pushes from its own process (huggingface_hub reads the endpoint at import)
    run_python(
        f"""
        import torch
        torch.set_num_threads(1)
        from hfvision.training import DreamBoothConfig, DreamBoothTrainer
        DreamBoothTrainer(DreamBoothConfig(**{kwargs!r})).train()
        """,
        hub=local_hub,
    )
    expected = _render(
        _dreambooth_class("flux").from_pretrained(tmp_path / "flux-pushed"), "a photo of {token} {class}"
    )
    body = """
from huggingface_hub import hf_hub_download, list_repo_files
try:
    diffusers.DiffusionPipeline.from_pretrained("user/flux-sks")
    report["refused"] = False
except ValueError as err:  # diffusers' own refusal to run the repo's code
    report["refused"] = "trust_remote_code=True" in str(err)
pipe = diffusers.DiffusionPipeline.from_pretrained("user/flux-sks", trust_remote_code=True)
np.save("hub.npy", render(pipe, "a photo of {token} {class}"))
report.update(cls=type(pipe).__name__, module=type(pipe).__module__.split(".")[0], token=pipe.instance_token,
              noun=pipe.class_noun, is_flux=isinstance(pipe, diffusers.FluxPipeline),
              index=json.load(open(hf_hub_download("user/flux-sks", "model_index.json")))["_class_name"],
              files=sorted(list_repo_files("user/flux-sks")))
"""
    report = _fresh(run_python, body, hub=local_hub)
    assert report["refused"] is True
    assert report["index"] == ["dreambooth_flux", "DreamBoothFluxPipeline"]
    assert (report["cls"], report["module"], report["is_flux"]) == (
        "DreamBoothFluxPipeline",
        "diffusers_modules",
        True,
    )
    assert (report["token"], report["noun"]) == ("sks", "person")
    assert {"dreambooth_flux.py", "dreambooth_utils.py", "handler.py"} <= set(report["files"])
    np.testing.assert_array_equal(np.load(tmp_path / "hub.npy"), expected)
