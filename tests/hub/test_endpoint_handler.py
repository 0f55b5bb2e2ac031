"""Inference Endpoints handlers: repos pushed to the local Hub, downloaded and served through their own handler.py in a
fresh process, answer exactly like ``hfvision serve`` on the same files (classification, face-first, text-to-image
with a seed, an ONNX export pushed with ``push_onnx_to_hub``, and bad requests)."""

from __future__ import annotations

import base64
import io
import json

import numpy as np
import pytest

pytestmark = pytest.mark.hub

# Runs in a fresh interpreter pointed at the local Hub: push the folders (the ONNX export through the export push
# path, which adds the handler itself), download them, import each repo's handler.py and answer the requests.
HANDLE = """
import base64, importlib.util, io, json, sys
import numpy as np
from huggingface_hub import HfApi, snapshot_download
from PIL import Image
from hfvision.export import push_onnx_to_hub

jobs = json.loads(open("jobs.json").read())
api = HfApi()
answers = {}
for name, job in jobs.items():
    repo = f"user/{name}"
    if job["push"] == "onnx":
        push_onnx_to_hub(job["folder"], repo)
    else:
        api.create_repo(repo, exist_ok=True)
        api.upload_folder(folder_path=job["folder"], repo_id=repo)
    path = snapshot_download(repo, cache_dir="downloads")
    spec = importlib.util.spec_from_file_location(f"handler_{name}", f"{path}/handler.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    handler = module.EndpointHandler(path)
    out = answers[name] = []
    for request in job["requests"]:
        if request.pop("binary", False):  # the toolkit hands binary image uploads over as a PIL image
            request["inputs"] = Image.open(io.BytesIO(base64.b64decode(request["inputs"])))
        try:
            result = handler(request)
        except ValueError as err:
            out.append({"error": str(err)})
            continue
        if isinstance(result, Image.Image):
            np.save(f"{name}-{len(out)}.npy", np.asarray(result))
            result = {"image": f"{name}-{len(out)}.npy"}
        out.append(result)
    print(name, sorted(p.name for p in __import__("pathlib").Path(path).iterdir()), file=sys.stderr)
print(json.dumps(answers))
"""


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@pytest.fixture(scope="module")
def photo_jpegs():
    from hfvision.testing import sample_image

    def jpeg(name, size):
        buffer = io.BytesIO()
        sample_image(name).resize((size, size)).save(buffer, format="JPEG", quality=90)
        return buffer.getvalue()

    return {"astronaut": jpeg("astronaut", 256), "chelsea": jpeg("chelsea", 96)}


def _serve_answers(config, requests):
    """``hfvision serve``'s answers (status, JSON or decoded image) for wire requests, through the in-process app."""
    from PIL import Image
    from starlette.testclient import TestClient

    from hfvision.serving import create_app

    answers = []
    with TestClient(create_app(config)) as client:
        for body, content_type in requests:
            response = client.post("/", content=body, headers={"content-type": content_type})
            if response.headers["content-type"] == "image/png":
                answers.append((response.status_code, np.asarray(Image.open(io.BytesIO(response.content)))))
            else:
                answers.append((response.status_code, response.json()))
    return answers


def _wire(request: dict) -> tuple[bytes, str]:
    """The HTTP request ``hfvision serve`` gets for a handler request (binary upload or JSON)."""
    if request.get("binary"):
        return base64.b64decode(request["inputs"]), "image/jpeg"
    return json.dumps({k: v for k, v in request.items() if k != "binary"}).encode(), "application/json"


def test_pushed_repos_answer_like_hfvision_serve(tmp_path, tiny_model_dir, local_hub, run_python, photo_jpegs):
    from hfvision.export import export_onnx
    from hfvision.hub.endpoints import write_endpoint_files
    from hfvision.pipelines.dreambooth import DreamBoothPipeline
    from hfvision.serving import ServeConfig
    from hfvision.testing import tiny_sd_pipeline, tiny_vit_classifier
    from hfvision.training.classification.saving import write_model_files

    # a gender classifier repo as the trainer saves it (custom pipeline code + custom_pipelines in config.json)
    classifier = tmp_path / "classifier"
    write_model_files(*tiny_vit_classifier(), classifier, "gender-classification")
    assert write_endpoint_files(classifier, "classifier") == ["handler.py", "requirements.txt"]
    dreambooth = tmp_path / "dreambooth"
    pipe = DreamBoothPipeline.from_components(tiny_sd_pipeline("sd1"), instance_token="sks", class_noun="dog")
    pipe.save_pretrained(dreambooth)
    write_endpoint_files(dreambooth, "pipeline")
    onnx = export_onnx(tiny_model_dir("vit"), tmp_path / "onnx", task="image-classification").output_dir

    astronaut, chelsea = _b64(photo_jpegs["astronaut"]), _b64(photo_jpegs["chelsea"])
    image_requests = [
        {"inputs": astronaut, "binary": True},
        {"inputs": chelsea, "parameters": {"top_k": 1}},
        {"inputs": "not base64!"},
        {"inputs": chelsea, "parameters": {"top_k": 0}},
    ]
    t2i = {"num_inference_steps": 2, "width": 64, "height": 64, "guidance_scale": 5.0}
    jobs = {
        "gender": {
            "folder": str(classifier),
            "push": "folder",
            "requests": image_requests + [{"inputs": astronaut, "parameters": {"faces": True}}],
        },
        "dreambooth": {
            "folder": str(dreambooth),
            "push": "folder",
            "requests": [
                {"inputs": "a photo of sks dog", "parameters": {**t2i, "seed": 7}},
                {"inputs": "a photo of sks dog", "parameters": {**t2i, "seed": 8, "negative_prompt": "blurry"}},
                {"inputs": "a photo of sks dog", "parameters": {**t2i, "width": 60}},
            ],
        },
        "vit-onnx": {"folder": str(onnx), "push": "onnx", "requests": image_requests},
    }
    (tmp_path / "jobs.json").write_text(json.dumps(jobs))
    answers = json.loads(run_python(HANDLE, hub=local_hub).splitlines()[-1])

    configs = {
        "gender": ServeConfig(task="gender-classification", model=str(classifier)),
        "dreambooth": ServeConfig(task="text-to-image", model=str(dreambooth)),
        "vit-onnx": ServeConfig(task="image-classification", model=str(onnx), onnx=True),
    }
    statuses = {}
    for name, job in jobs.items():
        served = _serve_answers(configs[name], [_wire(r) for r in job["requests"]])
        statuses[name] = [status for status, _ in served]
        assert len(answers[name]) == len(served)
        for got, (status, want) in zip(answers[name], served):
            if status != 200:  # the handler raises the server's one-line reason (the endpoint answers it as a 400)
                assert status == 400 and got == want, (name, got, want)
            elif isinstance(want, np.ndarray):  # text-to-image: the same seed gives the bitwise same image
                image = np.load(tmp_path / got["image"])
                assert image.shape == want.shape == (64, 64, 3) and np.array_equal(image, want), name
            else:
                assert got == want, (name, got, want)
    assert statuses == {
        "gender": [200, 200, 400, 400, 200],
        "dreambooth": [200, 200, 400],
        "vit-onnx": [200, 200, 400, 400],
    }
    faces = answers["gender"][-1]
    assert len(faces) == 1 and {"box", "labels"} <= set(faces[0]), faces  # astronaut: one face, classified
    assert answers["dreambooth"][2] == {"error": "invalid parameter: width=60 must be a multiple of 8; try 56 or 64"}


def test_write_endpoint_files_settings_and_errors(tmp_path, tiny_model_dir):
    """The handler's settings are inferred from the folder; bad kinds/tasks/bases fail before anything is written."""
    import ast

    from hfvision.hub.endpoints import endpoint_settings, write_endpoint_files

    vit = tiny_model_dir("vit")
    assert endpoint_settings(vit, "classifier") == {"kind": "classifier", "task": "image-classification"}
    for key in ("hfvision-gender-classification", "gender-classification"):  # as saved now, and by older versions
        gender = tmp_path / key
        gender.mkdir()
        (gender / "config.json").write_text(json.dumps({"custom_pipelines": {key: {}}}))
        assert endpoint_settings(gender, "classifier")["task"] == "gender-classification"
    lora = tmp_path / "lora"
    lora.mkdir()
    write_endpoint_files(
        lora, "lora", base_model="sd15", requirement="hfvision @ git+https://example.com/hfvision@abc"
    )
    handler = (lora / "handler.py").read_text()
    settings = ast.literal_eval(handler.split("SETTINGS = ", 1)[1].split("\n", 1)[0])
    assert settings == {"kind": "lora", "task": "text-to-image", "base_model": "sd15", "base_revision": None}
    compile(handler, "handler.py", "exec")
    assert (lora / "requirements.txt").read_text().splitlines()[
        -1
    ] == "hfvision @ git+https://example.com/hfvision@abc"
    from hfvision import __version__

    write_endpoint_files(lora, "pipeline")
    assert (lora / "requirements.txt").read_text().splitlines()[-1] == f"hfvision=={__version__}"
    with pytest.raises(ValueError, match="kind='docker' is not one of classifier, onnx, pipeline, lora"):
        endpoint_settings(vit, "docker")
    with pytest.raises(ValueError, match='kind="lora" needs base_model='):
        endpoint_settings(lora, "lora")
    with pytest.raises(ValueError, match="is a local folder, which the endpoint cannot see"):
        endpoint_settings(lora, "lora", base_model=str(vit))
    with pytest.raises(ValueError, match='kind="onnx" needs task='):
        endpoint_settings(vit, "onnx")
    with pytest.raises(ValueError, match="task='text-to-image' is not a classifier task"):
        endpoint_settings(vit, "classifier", task="text-to-image")
    with pytest.raises(FileNotFoundError, match="is not a folder"):
        write_endpoint_files(tmp_path / "missing", "classifier")


def test_lora_endpoint_loads_the_base_and_the_adapter(tmp_path, tiny_model_dir):
    """kind="lora": the handler's image equals hfvision serve's on the same base + LoRA, and differs from the base's."""
    import torch
    from diffusers import StableDiffusionPipeline
    from PIL import Image
    from starlette.testclient import TestClient

    from hfvision.models import load_pipeline
    from hfvision.serving import ServeConfig, create_app
    from hfvision.serving.inference_endpoints import EndpointModel
    from hfvision.training.dreambooth.lora import UNET_TARGET_MODULES, add_lora, lora_layers, lora_metadata

    base = str(tiny_model_dir("sd1"))
    unet = load_pipeline(base).unet
    add_lora(unet, rank=4, alpha=4, dropout=0.0, target_modules=UNET_TARGET_MODULES)
    torch.manual_seed(0)
    with torch.no_grad():
        for name, param in unet.named_parameters():
            if "lora_B" in name:
                param.normal_(std=0.5)  # a "trained" adapter: gaussian init leaves B at zero
    lora_dir = tmp_path / "lora"
    layers, metadata = lora_layers(unet), lora_metadata(unet)
    StableDiffusionPipeline.save_lora_weights(lora_dir, unet_lora_layers=layers, unet_lora_adapter_metadata=metadata)
    parameters = {"num_inference_steps": 2, "seed": 3, "width": 64, "height": 64}
    request = {"inputs": "a photo of sks dog", "parameters": parameters}
    handler = EndpointModel(str(lora_dir), kind="lora", task="text-to-image", base_model=base, device="cpu")
    got = np.asarray(handler(dict(request)))

    def served(pipe):
        config = ServeConfig(task="text-to-image", model="m")
        with TestClient(create_app(config, pipe=pipe)) as client:
            response = client.post("/", json=request)
        assert response.status_code == 200, response.text
        return np.asarray(Image.open(io.BytesIO(response.content)))

    with_lora = load_pipeline(base)
    with_lora.load_lora_weights(str(lora_dir))
    assert np.array_equal(got, served(with_lora))
    assert not np.array_equal(got, served(load_pipeline(base)))  # the adapter changes the image
