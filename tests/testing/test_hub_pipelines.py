"""The test kit's tiny ViT and tiny SD pipeline survive push_to_hub -> from_pretrained("user/repo") unchanged."""

import json

import pytest

pytestmark = pytest.mark.hub

PUSH = """
import sys
from safetensors.torch import save_file
from hfvision import testing as t

model, processor = t.tiny_vit_classifier()
model.push_to_hub("user/tiny-vit-kit")
processor.push_to_hub("user/tiny-vit-kit")
pipe = t.tiny_sd_pipeline("sd1")
pipe.push_to_hub("user/tiny-sd1")
for name in ("unet", "vae", "text_encoder"):
    sd = {k: v.contiguous() for k, v in getattr(pipe, name).state_dict().items()}
    save_file(sd, f"{sys.argv[1]}/{name}.safetensors")
save_file({k: v.contiguous() for k, v in model.state_dict().items()}, f"{sys.argv[1]}/vit.safetensors")
"""

LOAD = """
import json, sys
import torch
from diffusers import DiffusionPipeline
from safetensors.torch import load_file
from transformers import AutoImageProcessor, AutoModelForImageClassification

def diff(module, path):
    ref, got = load_file(path), module.state_dict()
    return {"keys": sorted(set(ref) ^ set(got)), "values": [k for k in ref if k in got and not torch.equal(ref[k], got[k])]}

vit = AutoModelForImageClassification.from_pretrained("user/tiny-vit-kit")
processor = AutoImageProcessor.from_pretrained("user/tiny-vit-kit")
pipe = DiffusionPipeline.from_pretrained("user/tiny-sd1")
report = {"vit": diff(vit, f"{sys.argv[1]}/vit.safetensors"), "pipeline_class": type(pipe).__name__,
          "processor_size": dict(height=processor.size.height, width=processor.size.width), "labels": vit.config.id2label}
for name in ("unet", "vae", "text_encoder"):
    report[name] = diff(getattr(pipe, name), f"{sys.argv[1]}/{name}.safetensors")
report["prompt_ids"] = pipe.tokenizer("a photo of").input_ids
print(json.dumps(report))
"""


def test_tiny_vit_and_sd_pipeline_round_trip_through_local_hub(local_hub, run_python, tmp_path):
    run_python(PUSH.replace("sys.argv[1]", repr(str(tmp_path))), hub=local_hub)
    out = run_python(LOAD.replace("sys.argv[1]", repr(str(tmp_path))), hub=local_hub)
    report = json.loads(out.strip().splitlines()[-1])
    for name in ("vit", "unet", "vae", "text_encoder"):
        assert report[name] == {"keys": [], "values": []}, name
    assert report["pipeline_class"] == "StableDiffusionPipeline"
    assert report["labels"] == {"0": "female", "1": "male"}
    assert report["processor_size"] == {"height": 64, "width": 64}
    assert report["prompt_ids"] == [49406, 320, 1125, 539, 49407]
