"""load_controlnet: compatibility is decided from config.json before any weights are read."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from hfvision.models import check_controlnet_compatibility, controlnet_family, load_controlnet
from hfvision.testing import tiny_controlnet, tiny_unet

REAL_SD2_CONFIG = {
    "_class_name": "ControlNetModel",
    "cross_attention_dim": 1024,
    "in_channels": 4,
    "block_out_channels": [320, 640, 1280, 1280],
    "addition_embed_type": None,
}


def test_loads_a_matching_local_controlnet(tiny_model_dir):
    unet = tiny_unet("sd1")
    controlnet = load_controlnet(tiny_model_dir("controlnet-sd1"), base=unet)
    expected = tiny_controlnet("sd1").state_dict()
    assert controlnet.state_dict().keys() == expected.keys()
    assert all(torch.equal(v, expected[k]) for k, v in controlnet.state_dict().items())


def test_mismatch_refused_before_reading_weights(tmp_path):
    folder = tmp_path / "cn-sdxl"
    tiny_controlnet("sdxl").save_pretrained(folder)
    (weights,) = folder.glob("*.safetensors")
    weights.write_bytes(b"not a safetensors file")  # any attempt to read the weights would fail differently
    with pytest.raises(ValueError, match="cross_attention_dim is 64 but the UNet's is 32"):
        load_controlnet(folder, base=tiny_unet("sd1"))
    with pytest.raises(Exception) as err:  # with a matching base the (corrupt) weights are read: a different error
        load_controlnet(folder, base=tiny_unet("sdxl"))
    assert "cross_attention_dim" not in str(err.value)
    shutil.rmtree(folder)


def test_family_checks_on_real_sized_configs(monkeypatch, tmp_path):
    assert controlnet_family(REAL_SD2_CONFIG) == "sd2"
    assert controlnet_family({"cross_attention_dim": 2048, "addition_embed_type": "text_time"}) == "sdxl"
    assert controlnet_family({"_class_name": "FluxControlNetModel"}) == "flux"
    check_controlnet_compatibility(REAL_SD2_CONFIG, "sd21-base")
    with pytest.raises(ValueError, match="is for sd2 .* but base 'sd15' is sd1; choose one of canny, depth"):
        check_controlnet_compatibility(REAL_SD2_CONFIG, "sd15")
    with pytest.raises(ValueError, match="matches no known family"):
        check_controlnet_compatibility(dict(tiny_controlnet("sd1").config), "sd15")
    with pytest.raises(ValueError, match="FluxControlNetModel, which does not condition a UNet2DConditionModel"):
        check_controlnet_compatibility({"_class_name": "FluxControlNetModel"}, tiny_unet("sd1"))

    # A registered name resolves to its Hub id; only config.json is fetched before the check refuses it.
    fetched = []
    config_file = tmp_path / "config.json"
    config_file.write_text(json.dumps(REAL_SD2_CONFIG))

    def fake_download(repo_id, filename, **kwargs):
        fetched.append((repo_id, filename))
        return str(config_file)

    monkeypatch.setattr("huggingface_hub.hf_hub_download", fake_download)
    with pytest.raises(ValueError, match="is for sd2"):
        load_controlnet("canny", base="sd15")
    assert fetched == [("lllyasviel/control_v11p_sd15_canny", "config.json")]
