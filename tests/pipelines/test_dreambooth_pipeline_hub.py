"""Hub round trip: push a DreamBooth pipeline with hfvision, load it in a fresh process where hfvision cannot be
imported, via diffusers' remote-code path, and get identical images. The pushing process also loads a registry key
and a DreamBooth Hub repo with `load_pipeline` (one process instead of two: interpreter start-up dominates).

The reference images come from the same files loaded with hfvision's classes: weights loaded from safetensors can sit
at addresses that are not 64-byte aligned, and CPU matmul kernels then round differently (~1e-7 on SDXL's pooled text
projection) than for the freshly built in-memory model. Against the in-memory model the check is 1e-5.
"""

from __future__ import annotations

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
kw = dict(num_inference_steps=2, output_type="np")
for name, pipe, extra in (("sd", sd, dict(control_image=control)), ("xl", xl, dict(height=64, width=64))):
    for tag, p in (("mem", pipe), ("saved", type(pipe).from_pretrained(f"{name}-out"))):
        p.set_progress_bar_config(disable=True)
        images = p("a photo of {token} {class}", generator=torch.Generator().manual_seed(0), **kw, **extra).images
        np.save(f"{name}-{tag}.npy", images)
"""

LOAD = """
import importlib.abc, sys

class NoHfvision(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "hfvision" or name.startswith("hfvision."):
            raise ImportError("hfvision is blocked in this process")

sys.meta_path.insert(0, NoHfvision())
import numpy as np, torch
torch.set_num_threads(1)
from diffusers import DiffusionPipeline
from PIL import Image

control = Image.fromarray(np.load("control.npy"))
kw = dict(num_inference_steps=2, output_type="np")
for name, repo, module, extra in (
    ("sd", "user/dreambooth-tiny-sd2", "dreambooth", dict(control_image=control)),
    ("xl", "user/dreambooth-tiny-sdxl", "dreambooth_xl", dict(height=64, width=64)),
):
    pipe = DiffusionPipeline.from_pretrained(repo, custom_pipeline=module, trust_remote_code=True)
    pipe.set_progress_bar_config(disable=True)
    images = pipe("a photo of {token} {class}", generator=torch.Generator().manual_seed(0), **kw, **extra).images
    np.save(f"{name}-loaded.npy", images)
    print(name, type(pipe).__name__, type(pipe).__module__, pipe.config.instance_token, pipe.config.family,
          type(getattr(pipe, "controlnet", None)).__name__)
assert not any(m == "hfvision" or m.startswith("hfvision.") for m in sys.modules)
"""


def test_push_and_load_without_hfvision(local_hub, run_python, tmp_path):
    helpers = str(Path(__file__).parent)
    pushed = run_python(PUSH, hub=local_hub, env={"PYTHONPATH": helpers}).split()
    assert pushed == ["StableDiffusionPipeline", "v_prediction", "DreamBoothPipeline", "sks", "True"]
    out = run_python(LOAD, hub=local_hub).splitlines()
    assert out[0].split()[:2] == ["sd", "DreamBoothPipeline"] and out[0].split()[2].startswith("diffusers_modules.")
    assert out[0].split()[3:] == ["sks", "sd2", "ControlNetModel"]
    assert out[1].split()[:2] == ["xl", "DreamBoothXLPipeline"] and out[1].split()[3:5] == ["zwx", "sdxl"]
    for name in ("sd", "xl"):
        saved, loaded = np.load(tmp_path / f"{name}-saved.npy"), np.load(tmp_path / f"{name}-loaded.npy")
        assert saved.shape == loaded.shape == (1, 64, 64, 3)
        np.testing.assert_array_equal(saved, loaded)
        assert np.abs(np.load(tmp_path / f"{name}-mem.npy") - loaded).max() <= 1e-5
