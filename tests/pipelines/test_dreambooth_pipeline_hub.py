"""Hub round trip: push SD and SDXL DreamBooth pipelines with hfvision (``pipe.push_to_hub`` and
``save_pretrained(push_to_hub=True)``), then in a fresh process where hfvision cannot be imported load them with the
one stock call ``DiffusionPipeline.from_pretrained(repo, trust_remote_code=True)`` (model_index.json names the shipped
module: ``["dreambooth", "DreamBoothPipeline"]``) and get identical images; without ``trust_remote_code`` diffusers
refuses. With hfvision, ``DreamBoothPipeline.from_pretrained(repo)`` loads hfvision's installed class and runs no code
from the repo. The pushing process also loads a registry key and a DreamBooth Hub repo with `load_pipeline` (one
process instead of two: interpreter start-up dominates).

diffusers 0.42.1 sends *every* class's ``from_pretrained`` through the repo's code when ``_class_name`` is
``[module, class]`` (``_resolve_custom_pipeline_and_cls`` / ``download``), so the stock
``StableDiffusionPipeline.from_pretrained(repo)`` also needs ``trust_remote_code=True``; it then returns the
DreamBooth class, a ``StableDiffusionPipeline``. Both behaviours are pinned below.

The reference images come from the same files loaded with hfvision's classes: weights loaded from safetensors can sit
at addresses that are not 64-byte aligned, and CPU matmul kernels then round differently (~1e-7 on SDXL's pooled text
projection) than for the freshly built in-memory model. Against the in-memory model the check is 1e-5.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.hub

PUSH = """
import numpy as np, torch
torch.set_num_threads(1)
from hfvision.pipelines.dreambooth import DreamBoothPipeline
from hfvision.pipelines.dreambooth_xl import DreamBoothXLPipeline
from hfvision.testing import tiny_sd_pipeline
from dreambooth_testing import active_controlnet, control_photo

control = control_photo()
np.save("control.npy", np.asarray(control))
base = tiny_sd_pipeline("sd2")
sd = DreamBoothPipeline.from_components(base, controlnet=active_controlnet("sd2"), instance_token="sks",
                                        class_noun="dog")
sd.push_to_hub("user/dreambooth-tiny-sd2")

# load_pipeline through the Hub: a registry key (the local Hub stands in for the real repo; the pinned revision does
# not exist there, hence revision="main") and a Hub id holding a DreamBoothPipeline (loaded as hfvision's class).
from hfvision.models import get_base_model, load_pipeline
base.push_to_hub(get_base_model("sd21").repo_id)
by_key, by_repo = load_pipeline("sd21", revision="main"), load_pipeline("user/dreambooth-tiny-sd2")
same = all(torch.equal(a, b) for a, b in zip(base.unet.state_dict().values(), by_key.unet.state_dict().values()))
same &= all(torch.equal(a, b) for a, b in zip(sd.controlnet.state_dict().values(), by_repo.controlnet.state_dict().values()))
print(type(by_key).__name__, by_key.scheduler.config.prediction_type, type(by_repo).__name__, by_repo.instance_token, same)
xl = DreamBoothXLPipeline.from_components(tiny_sd_pipeline("sdxl"), instance_token="zwx", class_noun="cat")
xl.save_pretrained("xl-out", push_to_hub=True, repo_id="user/dreambooth-tiny-sdxl")
sd.save_pretrained("sd-out")
import json
from huggingface_hub import hf_hub_download
for repo in ("user/dreambooth-tiny-sd2", "user/dreambooth-tiny-sdxl"):
    print(*json.load(open(hf_hub_download(repo, "model_index.json")))["_class_name"])
from huggingface_hub import list_repo_files
print(all({"handler.py", "requirements.txt"} <= set(list_repo_files(repo))
          for repo in ("user/dreambooth-tiny-sd2", "user/dreambooth-tiny-sdxl")))
kw = dict(num_inference_steps=2, output_type="np")
for name, pipe, extra in (("sd", sd, dict(control_image=control)), ("xl", xl, dict(height=64, width=64))):
    repo = {"sd": "user/dreambooth-tiny-sd2", "xl": "user/dreambooth-tiny-sdxl"}[name]
    from_hub = type(pipe).from_pretrained(repo)  # hfvision's own class: no remote code, no trust_remote_code
    print(type(from_hub) is type(pipe), from_hub.instance_token)
    for tag, p in (("mem", pipe), ("saved", type(pipe).from_pretrained(f"{name}-out")), ("hub", from_hub)):
        p.set_progress_bar_config(disable=True)
        images = p("a photo of {token} {class}", generator=torch.Generator().manual_seed(0), **kw, **extra).images
        np.save(f"{name}-{tag}.npy", images)
"""

LOAD = """
import sys

sys.modules["hfvision"] = None  # `import hfvision` (and of any submodule) fails in this process
import numpy as np, torch
torch.set_num_threads(1)
from diffusers import DiffusionPipeline, StableDiffusionPipeline, StableDiffusionXLPipeline
from PIL import Image

control = Image.fromarray(np.load("control.npy"))
kw = dict(num_inference_steps=2, output_type="np")
for name, repo, stock, extra in (
    ("sd", "user/dreambooth-tiny-sd2", StableDiffusionPipeline, dict(control_image=control)),
    ("xl", "user/dreambooth-tiny-sdxl", StableDiffusionXLPipeline, dict(height=64, width=64)),
):
    for cls in (DiffusionPipeline, stock):
        try:
            cls.from_pretrained(repo)
            print("loaded-without-trust")
        except ValueError as err:
            assert "trust_remote_code=True" in str(err), err
    via_stock = stock.from_pretrained(repo, trust_remote_code=True)
    assert isinstance(via_stock, stock) and type(via_stock).__name__.startswith("DreamBooth")
    pipe = DiffusionPipeline.from_pretrained(repo, trust_remote_code=True)
    pipe.set_progress_bar_config(disable=True)
    images = pipe("a photo of {token} {class}", generator=torch.Generator().manual_seed(0), **kw, **extra).images
    np.save(f"{name}-loaded.npy", images)
    print(name, type(pipe).__name__, type(pipe).__module__, pipe.config.instance_token, pipe.config.family,
          type(getattr(pipe, "controlnet", None)).__name__)
assert not any(m.startswith("hfvision.") or m == "hfvision" and sys.modules[m] for m in sys.modules)
"""


def test_push_and_load_without_hfvision(local_hub, run_python, tmp_path):
    helpers = str(Path(__file__).parent)
    pythonpath = os.pathsep.join(p for p in (helpers, os.environ.get("PYTHONPATH")) if p)
    pushed = run_python(PUSH, hub=local_hub, env={"PYTHONPATH": pythonpath}).split()
    assert pushed == [
        "StableDiffusionPipeline",
        "v_prediction",
        "DreamBoothPipeline",
        "sks",
        "True",
        "dreambooth",
        "DreamBoothPipeline",
        "dreambooth_xl",
        "DreamBoothXLPipeline",
        "True",  # both repos carry the Inference Endpoints handler.py + requirements.txt
        "True",
        "sks",
        "True",
        "zwx",
    ]
    out = run_python(LOAD, hub=local_hub).splitlines()
    assert "loaded-without-trust" not in out
    assert out[0].split()[:2] == ["sd", "DreamBoothPipeline"] and out[0].split()[2].startswith("diffusers_modules.")
    assert out[0].split()[3:] == ["sks", "sd2", "ControlNetModel"]
    assert out[1].split()[:2] == ["xl", "DreamBoothXLPipeline"] and out[1].split()[3:5] == ["zwx", "sdxl"]
    for name in ("sd", "xl"):
        saved, loaded = np.load(tmp_path / f"{name}-saved.npy"), np.load(tmp_path / f"{name}-loaded.npy")
        assert saved.shape == loaded.shape == (1, 64, 64, 3)
        np.testing.assert_array_equal(saved, loaded)
        np.testing.assert_array_equal(saved, np.load(tmp_path / f"{name}-hub.npy"))
        assert np.abs(np.load(tmp_path / f"{name}-mem.npy") - loaded).max() <= 1e-5
