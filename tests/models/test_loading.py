"""load_pipeline from every kind of source, and its refusals."""

from __future__ import annotations

import hashlib

import pytest
import torch

from hfvision.models import classify_source, load_pipeline


@pytest.fixture(scope="module")
def sd1_single_file(tiny_model_dir, tmp_path_factory):
    from hfvision.conversion import to_single_file

    return to_single_file(tiny_model_dir("sd1"), tmp_path_factory.mktemp("single") / "tiny-sd1.safetensors")


def same_weights(a, b) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_classify_source(tmp_path):
    (tmp_path / "m.safetensors").write_bytes(b"x")
    assert classify_source("https://example.com/m.safetensors") == "url"
    assert classify_source(tmp_path) == "directory"
    assert classify_source(tmp_path / "m.safetensors") == "file"
    assert classify_source("sd21-base") == "registry"
    assert classify_source("someone/their-model") == "hub"
    with pytest.raises(FileNotFoundError, match="does not exist"):
        classify_source(tmp_path / "missing.safetensors")
    with pytest.raises(ValueError, match="did you mean 'sd15'"):
        classify_source("sd1.5")
    with pytest.raises(ValueError, match="unsupported URL scheme"):
        classify_source("s3://bucket/model.safetensors")


def test_local_directories(tiny_model_dir, tmp_path):
    from diffusers import StableDiffusionPipeline

    from hfvision.pipelines.dreambooth import DreamBoothPipeline

    pipe = load_pipeline(tiny_model_dir("sd1"))
    assert type(pipe) is StableDiffusionPipeline
    DreamBoothPipeline.from_components(pipe, instance_token="sks").save_pretrained(tmp_path / "db")
    loaded = load_pipeline(tmp_path / "db")
    assert type(loaded) is DreamBoothPipeline and loaded.instance_token == "sks"  # hfvision's class, no remote code
    assert same_weights(pipe.unet, loaded.unet)
    with pytest.raises(ValueError, match="no model_index.json"):
        load_pipeline(tiny_model_dir("controlnet-sd1"))


def test_single_file_and_url(tiny_model_dir, sd1_single_file, file_server, tmp_path):
    from diffusers import StableDiffusionPipeline

    original = StableDiffusionPipeline.from_pretrained(tiny_model_dir("sd1"))
    pipe = load_pipeline(sd1_single_file)
    assert same_weights(original.unet, pipe.unet) and same_weights(original.vae, pipe.vae)

    data = sd1_single_file.read_bytes()
    file_server.files["/files/tiny-sd1.safetensors"] = data
    url = file_server.url + "/files/tiny-sd1.safetensors"
    from_url = load_pipeline(url, sha256=hashlib.sha256(data).hexdigest(), cache_dir=tmp_path / "cache")
    assert same_weights(original.unet, from_url.unet) and same_weights(original.text_encoder, from_url.text_encoder)
    with pytest.raises(ValueError, match="size cap"):
        load_pipeline(url, max_bytes=len(data) // 2, cache_dir=tmp_path / "cache2")
    with pytest.raises(FileNotFoundError, match="404"):
        load_pipeline(file_server.url + "/files/nope.safetensors", cache_dir=tmp_path / "cache3")
    assert not list((tmp_path / "cache2").rglob("*.incomplete")) and not list((tmp_path / "cache3").rglob("blobs/*"))


def test_bad_single_files(sd1_single_file, tmp_path):
    from safetensors.torch import save_file

    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(sd1_single_file.read_bytes()[:-1000])
    with pytest.raises(ValueError, match="truncated or corrupt"):
        load_pipeline(truncated)

    evil = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(1)}, "callback": Payload()}, evil)
    with pytest.raises(ValueError, match="pickle that needs code"):
        load_pipeline(evil)

    other = tmp_path / "other.safetensors"
    save_file({"model.layers.0.weight": torch.zeros(2)}, other)
    with pytest.raises(ValueError, match="supported single-file families"):
        load_pipeline(other)
    with pytest.raises(ValueError, match="unsupported file type"):
        load_pipeline(_touch(tmp_path / "model.onnx"))
    with pytest.raises(ValueError, match="sha256 mismatch"):
        load_pipeline(sd1_single_file, sha256="0" * 64)
    with pytest.raises(ValueError, match="did you mean 'sd21'"):
        load_pipeline(sd1_single_file, base="sd-21")


class Payload:  # any pickled class instance needs code to unpickle
    pass


def _touch(path):
    path.write_bytes(b"\0" * 16)
    return path
