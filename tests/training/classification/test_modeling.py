"""Base-model loading for a label set (head kept / re-initialised, timm num_classes conflict) and the LoRA table."""

from __future__ import annotations

import json
import logging
import shutil

import pytest
import torch

from hfvision.training.classification.modeling import add_lora, architecture_spec, head_modules, load_classifier


def _state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_same_labels_keep_the_trained_head(tiny_model_dir, caplog):
    from transformers import AutoModelForImageClassification

    base = AutoModelForImageClassification.from_pretrained(tiny_model_dir("vit"))
    with caplog.at_level(logging.INFO, logger="hfvision"):
        loaded = load_classifier(str(tiny_model_dir("vit")), ["MALE", "female"])  # other order and case
    assert loaded.labels == ["female", "male"] and not loaded.head_reinitialised
    assert loaded.model.config.id2label == {0: "female", 1: "male"}
    for key, value in _state(base).items():
        torch.testing.assert_close(loaded.model.state_dict()[key], value, rtol=0, atol=0)
    assert "keeping its trained classifier" in caplog.text


@pytest.mark.parametrize("labels", [["cat", "dog"], ["cat", "dog", "bird"]])
def test_other_labels_reinitialise_the_head(tiny_model_dir, caplog, labels):
    from transformers import AutoModelForImageClassification

    base = _state(AutoModelForImageClassification.from_pretrained(tiny_model_dir("vit")))
    with caplog.at_level(logging.INFO, logger="hfvision"):
        loaded = load_classifier(str(tiny_model_dir("vit")), labels)
    model = loaded.model
    assert loaded.head_reinitialised and loaded.labels == labels
    assert model.config.id2label == dict(enumerate(labels)) and model.config.label2id["dog"] == 1
    assert model.classifier.weight.shape == (len(labels), 32)
    if len(labels) == 2:  # same shape: the old head must not survive
        assert not torch.equal(model.classifier.weight, base["classifier.weight"])
    for key, value in base.items():  # the backbone is the pretrained one
        if not key.startswith("classifier."):
            torch.testing.assert_close(model.state_dict()[key], value, rtol=0, atol=0)
    assert f"the classifier head is re-initialised for {len(labels)} labels" in caplog.text
    assert "female, male" in caplog.text


def test_timm_num_classes_conflict_is_handled(tmp_path, small_timm_dir, caplog):
    from transformers import AutoModelForImageClassification

    bad = tmp_path / "timm-bad"
    shutil.copytree(small_timm_dir, bad)
    config = json.loads((bad / "config.json").read_text())
    config["model_args"]["num_classes"] = 10  # what timm's save_for_hf records
    (bad / "config.json").write_text(json.dumps(config))
    with pytest.raises(TypeError, match="multiple values for keyword argument 'num_classes'"):
        AutoModelForImageClassification.from_pretrained(bad)  # the TimmWrapper bug this works around
    with caplog.at_level(logging.INFO, logger="hfvision"):
        loaded = load_classifier(str(bad), ["cat", "dog"])
    assert loaded.is_timm and loaded.head_reinitialised
    assert "ignoring model_args.num_classes=10" in caplog.text
    assert loaded.model.timm_model.get_classifier().out_features == 2
    assert type(loaded.processor).__name__ == "TimmWrapperImageProcessor"


def test_lora_targets_per_architecture(tiny_model_dir, small_timm_dir):
    vit = load_classifier(str(tiny_model_dir("vit")), ["female", "male"]).model
    spec = architecture_spec(vit)
    assert spec.lora_target_modules == ("q_proj", "v_proj") and spec.head_modules == ("classifier",)
    peft_vit = add_lora(vit, r=4)
    trainable = {n for n, p in peft_vit.named_parameters() if p.requires_grad}
    assert trainable and all(
        ("lora_" in n and ("q_proj" in n or "v_proj" in n)) or "classifier" in n for n in trainable
    )
    assert any("classifier.modules_to_save" in n for n in trainable)

    timm_model = load_classifier(str(small_timm_dir), ["cat", "dog"]).model
    spec = architecture_spec(timm_model)
    assert spec.head_modules == ("timm_model.fc",)
    assert set(spec.lora_target_modules) == {"conv1", "conv2"}  # BasicBlock resnet: no conv3 present


def test_lora_fallback_for_architectures_outside_the_table():
    from transformers import ResNetConfig, ResNetForImageClassification

    config = ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], num_labels=2)
    model = ResNetForImageClassification(config)
    spec = architecture_spec(model)  # transformers ResNet: convolutions only, head = classifier
    assert spec.head_modules == ("classifier",)
    assert spec.lora_target_modules == ("convolution",)
    assert list(head_modules(model)) == ["classifier"]
