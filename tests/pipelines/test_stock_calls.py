"""Every natural call loads hfvision's classifier artifacts, each in a fresh process, from folders and the Hub.

Artifacts: the trainer's output for the tiny ViT and the tiny timm ResNet (``--task gender-classification``), and the
ONNX export of the trained ViT with its int8 model. Calls:

- with hfvision installed: ``transformers.pipeline("gender-classification", model=X)`` (no ``trust_remote_code``)
  and ``hfvision.pipeline(model=X)`` (task read from the saved files);
- without hfvision: ``transformers.pipeline(model=X, trust_remote_code=True)`` (the code saved in the repo) and
  ``transformers.pipeline("image-classification", model=X)`` (the stock class) for the PyTorch artifacts; for the
  ONNX ones, onnxruntime with the saved image processor (stock transformers has no ONNX backend).

Every call must give the scores of a reference computed here: transformers' stock pipeline for the PyTorch weights,
a plain onnxruntime session for the ONNX files.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from test_hub_roundtrip import BLOCK_HFVISION

INT8 = {"file_name": "model_quantized.onnx"}
MODEL_CLASSES = {
    "vit": "ViTForImageClassification",
    "timm": "TimmWrapperForImageClassification",
    "onnx": "OrtModelForImageClassification",
    "int8": "OrtModelForImageClassification",
}


def _train(base, data, out):
    from hfvision.testing.classifiers import fast_classifier_config
    from hfvision.training.classification import train_classifier

    config = fast_classifier_config(
        base,
        data,
        out,
        task="gender-classification",
        num_train_epochs=1,
        save_strategy="no",
        eval_strategy="no",
        report_to="none",
    )
    train_classifier(config)
    return out


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory, tiny_model_dir):
    """kind -> (folder, options of the call): trained ViT, trained timm ResNet, ONNX export, its int8 model."""
    from hfvision.export import export_onnx
    from hfvision.testing import save_tiny_timm_resnet
    from hfvision.training.classification import write_synthetic_imagefolder

    root = tmp_path_factory.mktemp("stock-calls")
    data = write_synthetic_imagefolder(root / "data", per_class=6, size=48, seed=0)
    timm_base = save_tiny_timm_resnet(root / "timm-base", num_classes=10)
    config = json.loads((timm_base / "config.json").read_text())  # 64 px: fast preprocessing
    config["pretrained_cfg"].update(input_size=[3, 64, 64], test_input_size=[3, 64, 64], crop_pct=1.0)
    (timm_base / "config.json").write_text(json.dumps(config))
    vit = _train(tiny_model_dir("vit"), data, root / "vit")
    timm = _train(timm_base, data, root / "timm")
    onnx = export_onnx(vit, root / "onnx", quantize="int8").output_dir
    return {"vit": (str(vit), {}), "timm": (str(timm), {}), "onnx": (str(onnx), {}), "int8": (str(onnx), INT8)}


@pytest.fixture(scope="module")
def photo(tmp_path_factory):
    from hfvision.testing import sample_image

    path = tmp_path_factory.mktemp("photo") / "chelsea.png"
    sample_image("chelsea").save(path)
    return str(path)


def _ort_scores(folder, file_name, image) -> list[dict]:
    """The ONNX recipe without hfvision: onnxruntime + the saved image processor + the config's labels."""
    import onnxruntime
    from transformers import AutoConfig, AutoImageProcessor

    pixels = AutoImageProcessor.from_pretrained(folder)(images=image, return_tensors="np")["pixel_values"]
    session = onnxruntime.InferenceSession(f"{folder}/{file_name}", providers=["CPUExecutionProvider"])
    logits = session.run(None, {"pixel_values": pixels.astype(np.float32)})[0][0]
    scores = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
    labels = AutoConfig.from_pretrained(folder).id2label
    return [{"label": labels[int(i)], "score": float(scores[i])} for i in np.argsort(-scores, kind="stable")]


@pytest.fixture(scope="module")
def expected(artifacts, photo):
    """The reference scores per artifact, computed in this process without hfvision's pipeline classes."""
    from PIL import Image
    from transformers import ImageClassificationPipeline, pipeline

    image = Image.open(photo).convert("RGB")
    reference = {}
    for kind, (folder, options) in artifacts.items():
        if kind in ("vit", "timm"):
            stock = pipeline("image-classification", model=folder, device="cpu", dtype="float32")
            assert type(stock) is ImageClassificationPipeline
            reference[kind] = stock(image)
        else:
            reference[kind] = _ort_scores(folder, options.get("file_name", "model.onnx"), image)
    return reference


def _with_hfvision(sources: dict, photo: str) -> str:
    return f"""
import json
import hfvision
import transformers

results = {{}}
for kind, (model, options) in {sources!r}.items():
    stock = transformers.pipeline("gender-classification", model=model, device="cpu", model_kwargs=options)
    ours = hfvision.pipeline(model=model, **options)
    results[kind] = {{name: [type(p).__name__, type(p.model).__name__, p({photo!r})]
                     for name, p in (("transformers", stock), ("hfvision", ours))}}
print(json.dumps(results))
"""


def _without_hfvision(sources: dict, photo: str) -> str:
    return (
        BLOCK_HFVISION
        + f"""
import json, os, sys
import numpy as np
import onnxruntime
import transformers
from huggingface_hub import snapshot_download
from PIL import Image
from transformers import AutoConfig, AutoImageProcessor

image = Image.open({photo!r}).convert("RGB")
results = {{}}
for kind, (model, options) in {sources!r}.items():
    if kind in ("vit", "timm"):
        remote = transformers.pipeline(model=model, trust_remote_code=True, device="cpu")
        stock = transformers.pipeline("image-classification", model=model, device="cpu")
        results[kind] = {{"remote_code": [type(remote).__name__, remote.task, remote(image)],
                         "image-classification": [type(stock).__name__, stock.task, stock(image)]}}
        continue
    folder = model if os.path.isdir(model) else snapshot_download(model)
    pixels = AutoImageProcessor.from_pretrained(folder)(images=image, return_tensors="np")["pixel_values"]
    session = onnxruntime.InferenceSession(os.path.join(folder, options.get("file_name", "model.onnx")))
    logits = session.run(None, {{"pixel_values": pixels.astype(np.float32)}})[0][0]
    scores = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
    labels = AutoConfig.from_pretrained(folder).id2label
    results[kind] = {{"onnxruntime": [[{{"label": labels[int(i)], "score": float(scores[i])}}
                                      for i in np.argsort(-scores, kind="stable")]]}}
assert not any(m.split(".")[0] == "hfvision" for m in sys.modules)
print(json.dumps(results))
"""
    )


def _check(results: dict, expected: dict, same_predictions, hfvision: bool) -> None:
    assert set(results) == set(expected)
    for kind, calls in results.items():
        atol = 1e-6 if kind in ("vit", "timm") else 1e-5
        for call, values in calls.items():
            if hfvision:
                pipeline_class, model_class, scores = values
                assert (pipeline_class, model_class) == ("GenderClassificationPipeline", MODEL_CLASSES[kind]), call
            elif call == "remote_code":
                pipeline_class, task, scores = values
                assert (pipeline_class, task) == ("GenderClassificationPipeline", "hfvision-gender-classification")
            elif call == "image-classification":
                pipeline_class, task, scores = values
                assert pipeline_class == "ImageClassificationPipeline"
            else:
                (scores,) = values
            same_predictions(scores, expected[kind], atol=atol)
    if "onnx" in results:  # the int8 call ran the int8 model: its scores differ from fp32's
        fp32, int8 = (next(iter(results[k].values()))[-1] for k in ("onnx", "int8"))
        assert max(abs(a["score"] - b["score"]) for a, b in zip(fp32, int8)) > 1e-6


def test_references_agree_across_backends(artifacts, expected, same_predictions):
    """The fp32 ONNX export gives the trained ViT's scores; the int8 model stays close. The export keeps the
    trained pipeline's task in its report, and declares no pipeline code it does not hold."""
    same_predictions(expected["onnx"], expected["vit"], atol=1e-5)
    same_predictions(expected["int8"], expected["vit"], atol=2e-2)
    onnx = artifacts["onnx"][0]
    assert json.loads(open(f"{onnx}/export_report.json").read())["task"] == "gender-classification"
    assert "custom_pipelines" not in json.loads(open(f"{onnx}/config.json").read())
    assert (
        "hfvision-gender-classification"
        in json.loads(open(f"{artifacts['vit'][0]}/config.json").read())["custom_pipelines"]
    )


def test_local_artifacts_load_by_every_call(artifacts, expected, photo, run_python, same_predictions, tmp_path):
    with_hfvision = run_python(_with_hfvision(artifacts, photo))
    _check(json.loads(with_hfvision.strip().splitlines()[-1]), expected, same_predictions, hfvision=True)
    without = run_python(_without_hfvision(artifacts, photo), env={"HF_HOME": str(tmp_path / "no-hfvision")})
    _check(json.loads(without.strip().splitlines()[-1]), expected, same_predictions, hfvision=False)


@pytest.mark.slow  # ~70 s: two fresh processes, four repos; test_local_artifacts_load_by_every_call is the fast one
@pytest.mark.hub
def test_pushed_artifacts_load_by_every_call(
    artifacts, expected, photo, local_hub, run_python, same_predictions, tmp_path, pickle_only
):
    """Pushed as the trainer and ``hfvision export onnx --push-to-hub`` push; loaded by every call, including
    ``verify=True`` through the stock factory, in fresh processes with empty caches. A pickle-only repo and a
    tampered cache are refused by the stock factory too."""
    repos = {"vit": "user/trained-vit", "timm": "user/trained-timm", "onnx": "user/gender-onnx"}
    sources = {kind: (repos.get(kind, repos["onnx"]), options) for kind, (_, options) in artifacts.items()}
    push = f"""
from huggingface_hub import HfApi
from hfvision.export import push_onnx_to_hub
from hfvision.training.classification.saving import PUSH_IGNORE_PATTERNS

api = HfApi()
for kind in ("vit", "timm"):
    api.create_repo({repos}[kind])
    api.upload_folder(repo_id={repos}[kind], folder_path={artifacts}[kind][0], ignore_patterns=PUSH_IGNORE_PATTERNS)
push_onnx_to_hub({artifacts["onnx"][0]!r}, {repos["onnx"]!r})
"""
    checks = f"""
import os
from huggingface_hub import snapshot_download
from hfvision.pipelines.loading import LoadRefusedError

for repo in ({repos["vit"]!r}, {repos["onnx"]!r}):
    verified = transformers.pipeline("gender-classification", model=repo, model_kwargs={{"verify": True}})
    print(json.dumps(verified({photo!r})))

api.create_repo("user/pickle-only")
api.upload_folder(repo_id="user/pickle-only", folder_path={str(pickle_only)!r})
for load in (transformers.pipeline, hfvision.pipeline):
    try:
        load("gender-classification", model="user/pickle-only")
        print("LOADED")
    except Exception as err:
        print(type(err).__name__, "|", err)

weights = os.path.join(snapshot_download({repos["vit"]!r}), "model.safetensors")
with open(weights, "r+b") as f:  # flip one bit of the cached weights
    f.seek(200)
    byte = f.read(1)[0]
    f.seek(200)
    f.write(bytes([byte ^ 1]))
try:
    transformers.pipeline("gender-classification", model={repos["vit"]!r}, model_kwargs={{"verify": True}})
    print("LOADED")
except LoadRefusedError as err:
    print(type(err).__name__, type(err.__cause__).__name__)
"""
    with_hfvision = run_python(
        push + _with_hfvision(sources, photo) + checks, hub=local_hub, env={"HF_HOME": str(tmp_path / "with-hfvision")}
    )
    *_, loaded, verified_vit, verified_onnx, stock_pickle, ours_pickle, tampered = with_hfvision.strip().splitlines()
    _check(json.loads(loaded), expected, same_predictions, hfvision=True)
    same_predictions(json.loads(verified_vit), expected["vit"])
    same_predictions(json.loads(verified_onnx), expected["onnx"], atol=1e-5)
    assert stock_pickle.startswith("LoadRefusedError | user/pickle-only: weights are pickle files only")
    assert "pytorch_model.bin" in stock_pickle and "model_kwargs={'allow_pickle': True}" in stock_pickle
    assert ours_pickle.startswith("PickleRefusedError | user/pickle-only: weights are pickle files only")
    assert "allow_pickle=True (CLI --allow-pickle)" in ours_pickle
    assert tampered == "LoadRefusedError ChecksumMismatchError"

    without = run_python(_without_hfvision(sources, photo), hub=local_hub, env={"HF_HOME": str(tmp_path / "bare")})
    _check(json.loads(without.strip().splitlines()[-1]), expected, same_predictions, hfvision=False)


@pytest.fixture
def pickle_only(vit_dir, tmp_path):
    """The tiny ViT with its weights as ``pytorch_model.bin`` only."""
    import shutil

    import torch
    from safetensors.torch import load_file

    folder = tmp_path / "pickle-only"
    folder.mkdir()
    for name in ("config.json", "preprocessor_config.json"):
        shutil.copy(vit_dir / name, folder / name)
    torch.save(load_file(vit_dir / "model.safetensors"), folder / "pytorch_model.bin")
    return folder


def test_pickle_refusal_holds_on_every_path(pickle_only, vit_dir, images, monkeypatch, capsys):
    import torch
    from transformers import pipeline

    import hfvision
    from hfvision.cli.main import main
    from hfvision.pipelines.loading import LoadRefusedError, PickleRefusedError
    from hfvision.serving.config import ServeConfig
    from hfvision.serving.tasks import load_pipeline_for
    from hfvision.ui.backend import ClassifyBackend

    real_load = torch.load
    unpickled = []
    monkeypatch.setattr(torch, "load", lambda *a, **k: unpickled.append(a[0]) or real_load(*a, **k))

    # transformers' factory after `import hfvision`: refused before any class (ViTForImageClassification from the
    # config's architectures included) reads the pickle
    with pytest.raises(LoadRefusedError) as refused:
        pipeline("gender-classification", model=str(pickle_only), device="cpu")
    message = str(refused.value)
    assert "\n" not in message and "pytorch_model.bin" in message
    assert "model_kwargs={'allow_pickle': True} to transformers.pipeline" in message
    assert isinstance(refused.value.__cause__, PickleRefusedError) and unpickled == []

    # hfvision.pipeline, the server's loader and the UI's backend (both call hfvision.pipeline), the CLI
    for load in (
        lambda: hfvision.pipeline("gender-classification", model=pickle_only),
        lambda: hfvision.pipeline(model=pickle_only),
        lambda: load_pipeline_for(ServeConfig(task="gender-classification", model=str(pickle_only))),
        lambda: ClassifyBackend(model=str(pickle_only)).pipeline(),
    ):
        with pytest.raises(PickleRefusedError, match=r"pickle files only \(pytorch_model.bin\).*allow_pickle=True"):
            load()
    image = vit_dir / "preprocessor_config.json"  # any existing file: the model is refused before inputs are read
    assert main(["classify", "--model", str(pickle_only), "--input", str(image), "--output", "out.jsonl"]) == 1
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0 and "--allow-pickle" in error and "pytorch_model.bin" in error
    assert unpickled == []

    # the opt-ins load it, with the safetensors model's scores
    reference = pipeline("gender-classification", model=str(vit_dir), device="cpu")(images[0])
    opted_in = pipeline(
        "gender-classification", model=str(pickle_only), device="cpu", model_kwargs={"allow_pickle": True}
    )
    assert opted_in(images[0]) == reference
    assert hfvision.pipeline("gender-classification", model=pickle_only, allow_pickle=True)(images[0]) == reference
    assert len(unpickled) == 2


def test_stock_factory_options_that_cannot_apply_are_refused_not_worked_around(vit_dir, tmp_path):
    import shutil

    from transformers import pipeline

    from hfvision.pipelines.loading import LoadRefusedError

    with pytest.raises(LoadRefusedError, match="is a local folder with no such record"):
        pipeline("gender-classification", model=str(vit_dir), model_kwargs={"verify": True})
    with pytest.raises(LoadRefusedError, match="use_onnx=True but it holds no ONNX export"):
        pipeline("gender-classification", model=str(vit_dir), model_kwargs={"use_onnx": True})
    # a folder with both: ONNX Runtime by default, the PyTorch weights with use_onnx=False
    both = tmp_path / "both"
    shutil.copytree(vit_dir, both)
    (both / "model.onnx").write_bytes(b"not an onnx graph")
    with pytest.raises(Exception, match="INVALID_PROTOBUF"):  # ONNX Runtime's error, not a fallback to torch
        pipeline("gender-classification", model=str(both), device="cpu")
    with pytest.raises(LoadRefusedError, match="could not load the ONNX export missing.onnx: .* no such ONNX file"):
        pipeline("gender-classification", model=str(both), device="cpu", model_kwargs={"file_name": "missing.onnx"})
    torch_pipe = pipeline("gender-classification", model=str(both), device="cpu", model_kwargs={"use_onnx": False})
    assert type(torch_pipe.model).__name__ == "ViTForImageClassification"
