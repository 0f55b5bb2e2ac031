"""Bad and unusual inputs, safe loading (safetensors only, no implied remote code) and the ONNX hook."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image


@pytest.fixture(scope="module")
def photo(images):
    return images[0].resize((96, 80))


def _bomb_png(path):
    # 100 MP declared (over the 64 MP limit), a few KB on disk
    Image.new("1", (10_000, 10_000)).save(path)


@pytest.mark.parametrize(
    "name, write, reason",
    [
        ("empty.jpg", lambda p, img: p.write_bytes(b""), "empty"),
        ("notes.jpg", lambda p, img: p.write_text("not an image"), "not an image"),
        ("page.png", lambda p, img: p.write_text("<!DOCTYPE html><html></html>"), "not an image"),
        ("cut.jpg", lambda p, img: p.write_bytes(_jpeg(img)[:600]), "truncated"),
        ("bomb.png", lambda p, img: _bomb_png(p), "decompression bomb"),
        ("folder.jpg", lambda p, img: p.mkdir(), "not a file"),
    ],
)
@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")  # raised as an error, warned by PIL too
def test_bad_files_raise_one_clear_error_naming_the_file(gender_pipe, photo, tmp_path, name, write, reason):
    from hfvision.data import ImageLoadError

    path = tmp_path / name
    write(path, photo)
    with pytest.raises(ImageLoadError, match=reason) as info:
        gender_pipe(str(path))
    assert str(path) in str(info.value) and info.value.reason == reason


def _jpeg(image, **kwargs) -> bytes:
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=95, **kwargs)
    return buf.getvalue()


def test_unusual_modes_and_exif_rotation_are_handled(gender_pipe, photo, tmp_path):
    """Each file gives the prediction of the RGB image it shows (computed here independently)."""
    clf = lambda x: gender_pipe(x, function_to_apply="none")  # noqa: E731 - logits: sensitive to any pixel change
    rgb = np.asarray(photo)

    # EXIF orientation 6 ("rotate 90 CW to display"): stored sideways, shown upright
    exif = Image.Exif()
    exif[0x0112] = 6
    sideways = photo.transpose(Image.Transpose.ROTATE_90)
    (tmp_path / "exif.jpg").write_bytes(_jpeg(sideways, exif=exif.tobytes()))
    stored = np.asarray(Image.open(tmp_path / "exif.jpg").convert("RGB"))  # pixels as stored, metadata dropped
    assert clf(str(tmp_path / "exif.jpg")) == clf(Image.fromarray(np.rot90(stored, k=-1).copy()))  # rotated 90 CW

    # 16-bit grayscale: scaled to 8 bits, replicated to RGB
    ramp = (np.linspace(0, 65535, 80 * 96).reshape(80, 96)).astype(np.uint16)
    Image.fromarray(ramp).save(tmp_path / "gray16.png")
    gray8 = np.clip(ramp / 65535.0 * 255.0 + 0.5, 0, 255).astype(np.uint8)
    assert clf(str(tmp_path / "gray16.png")) == clf(Image.fromarray(np.stack([gray8] * 3, -1)))

    # RGBA: transparent pixels become white
    alpha = np.zeros((80, 96), np.uint8)
    alpha[:, 48:] = 255
    Image.fromarray(np.dstack([rgb, alpha]), "RGBA").save(tmp_path / "alpha.png")
    flat = np.where(alpha[..., None] == 255, rgb, 255).astype(np.uint8)
    assert clf(str(tmp_path / "alpha.png")) == clf(Image.fromarray(flat))

    # palette and CMYK
    palette = photo.convert("P", palette=Image.Palette.ADAPTIVE, colors=32)
    palette.save(tmp_path / "palette.png")
    assert clf(str(tmp_path / "palette.png")) == clf(palette.convert("RGB"))
    photo.convert("CMYK").save(tmp_path / "cmyk.jpg", quality=95)
    assert clf(str(tmp_path / "cmyk.jpg")) == clf(Image.open(tmp_path / "cmyk.jpg").convert("RGB"))
    assert Image.open(tmp_path / "cmyk.jpg").mode == "CMYK"


def test_pickle_weights_are_refused_unless_allowed(vit_dir, tmp_path, images):
    import shutil

    import torch
    from safetensors.torch import load_file

    import hfvision

    for name in ("config.json", "preprocessor_config.json"):
        shutil.copy(vit_dir / name, tmp_path / name)
    torch.save(load_file(vit_dir / "model.safetensors"), tmp_path / "pytorch_model.bin")
    with pytest.raises(ValueError, match=r"pickle files only \(pytorch_model.bin\).*allow_pickle=True"):
        hfvision.pipeline("gender-classification", model=tmp_path)
    allowed = hfvision.pipeline("gender-classification", model=tmp_path, allow_pickle=True)
    assert allowed(images[0]) == hfvision.pipeline("gender-classification", model=vit_dir)(images[0])


def test_remote_code_is_never_implied(vit_dir, tmp_path):
    import json
    import shutil

    import hfvision

    shutil.copytree(vit_dir, tmp_path, dirs_exist_ok=True)
    marker = tmp_path / "code-ran"
    (tmp_path / "evil_model.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    config = json.loads((tmp_path / "config.json").read_text())
    config["auto_map"] = {"AutoModelForImageClassification": "evil_model.EvilModel"}
    (tmp_path / "config.json").write_text(json.dumps(config))
    hfvision.pipeline("image-classification", model=tmp_path)  # known architecture: the repo's code is ignored
    config.update(model_type="evil-vit", auto_map={"AutoConfig": "evil_model.EvilConfig", **config["auto_map"]})
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="trust_remote_code"):  # unknown architecture: refused, not run
        hfvision.pipeline("image-classification", model=tmp_path)
    assert not marker.exists()


def test_saved_pipeline_reloads_with_hfvision_classes_without_remote_code(gender_pipe, tmp_path, images):
    import json

    import hfvision
    from hfvision.pipelines.classification import GenderClassificationPipeline

    gender_pipe.save_pretrained(tmp_path)
    custom = json.loads((tmp_path / "config.json").read_text())["custom_pipelines"]
    assert list(custom) == ["hfvision-gender-classification"]  # not the task's name: see registry.saved_task_key
    assert custom["hfvision-gender-classification"]["impl"] == "classification.GenderClassificationPipeline"
    copied = {p.name for p in tmp_path.glob("*.py")}
    assert copied == {"classification.py", "image_batching.py", "auto_batch.py", "timm_utils.py"}
    reloaded = hfvision.pipeline(model=tmp_path)  # task read from custom_pipelines; hfvision's own class
    assert type(reloaded) is GenderClassificationPipeline
    assert reloaded(images[1]) == gender_pipe(images[1])
    # folders saved by earlier versions (key = the task's own name) still load through hfvision.pipeline
    config = json.loads((tmp_path / "config.json").read_text())
    config["custom_pipelines"] = {
        "gender-classification": config["custom_pipelines"]["hfvision-gender-classification"]
    }
    (tmp_path / "config.json").write_text(json.dumps(config))
    assert type(hfvision.pipeline(model=tmp_path)) is GenderClassificationPipeline


def test_onnx_folder_goes_to_the_onnx_runtime_hook(vit_dir, tmp_path, monkeypatch, images):
    import shutil

    import hfvision

    shutil.copytree(vit_dir, tmp_path, dirs_exist_ok=True)
    (tmp_path / "model.onnx").write_bytes(b"onnx")
    calls = []
    fake = lambda task, model, **kwargs: calls.append((task, model, kwargs)) or "ort-pipeline"  # noqa: E731
    monkeypatch.setattr("hfvision.export.loading.load_ort_pipeline", fake)
    assert hfvision.pipeline("gender-classification", model=tmp_path, top_k=1) == "ort-pipeline"
    assert calls == [("gender-classification", str(tmp_path), {"top_k": 1})]
    # the PyTorch weights on request
    assert hfvision.pipeline("gender-classification", model=tmp_path, backend="torch")(images[0])


def test_factory_argument_errors(vit_dir):
    import hfvision

    with pytest.raises(ValueError, match="is a local folder with no such record"):
        hfvision.pipeline("gender-classification", model=vit_dir, verify=True)
    with pytest.raises(ValueError, match="'image-feature-pyramid' has no default model"):
        hfvision.pipeline("image-feature-pyramid")
    with pytest.raises(ValueError, match="backend='tensorrt' is not one of"):
        hfvision.pipeline("gender-classification", model=vit_dir, backend="tensorrt")


def test_a_missing_model_path_is_named_not_sent_to_the_hub(tmp_path):
    import hfvision

    missing = tmp_path / "no-such-model"
    for model in (str(missing), "./no-such-model", "~/no-such-hfvision-model"):
        with pytest.raises(FileNotFoundError, match="no such folder; pass a folder with config.json or a Hub id"):
            hfvision.pipeline("gender-classification", model=model)
    (tmp_path / "weights.safetensors").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match="weights.safetensors: a file, not a model folder"):
        hfvision.pipeline("gender-classification", model=tmp_path / "weights.safetensors")
