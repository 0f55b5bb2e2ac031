"""End-to-end fine-tuning on generated imagefolders with the tiny ViT and the tiny timm ResNet (offline, CPU)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from transformers import TrainerCallback

from hfvision.training.classification import ImageClassificationTrainer, write_synthetic_imagefolder


@pytest.fixture(scope="module")
def vit_run(tmp_path_factory, tiny_model_dir, grouped_folder, make_config):
    """Full fine-tune of the tiny ViT as a gender-classification pipeline on a grouped two-class folder."""
    out = tmp_path_factory.mktemp("vit-run") / "out"
    config = make_config(tiny_model_dir("vit"), grouped_folder, out, task="gender-classification")
    trainer = ImageClassificationTrainer(config)
    trainer.train()
    trainer.save_pipeline()
    return trainer, out


def _images(trainer, split="validation"):
    from PIL import Image

    ds = getattr(trainer.data, split)
    return [Image.open(v["path"]).convert("RGB") for v in ds[trainer.data.image_column]], ds[trainer.data.label_column]


def test_vit_reaches_high_validation_accuracy(vit_run):
    trainer, out = vit_run
    report = json.loads((out / "metrics.json").read_text())
    assert report["num_samples"] == 10
    assert report["accuracy"] >= 0.95
    assert report["global_step"] == trainer.state.global_step == 12  # 3 epochs x 30 images / batch 8
    history = [h for h in trainer.state.log_history if "eval_accuracy" in h]
    assert len(history) == 3 and history[-1]["eval_accuracy"] == report["accuracy"]


def test_metric_files_match_a_recomputation_from_the_saved_model(vit_run):
    from PIL import Image
    from transformers import AutoImageProcessor, AutoModelForImageClassification

    from hfvision.training.classification.metrics import cell_box, cell_colour

    trainer, out = vit_run
    model = AutoModelForImageClassification.from_pretrained(out).eval()
    processor = AutoImageProcessor.from_pretrained(out)
    images, refs = _images(trainer)
    with torch.no_grad():
        preds = model(**processor(images=images, return_tensors="pt")).logits.argmax(-1).numpy()
    refs = np.asarray(refs)
    matrix = np.zeros((2, 2), int)
    np.add.at(matrix, (refs, preds), 1)

    report = json.loads((out / "metrics.json").read_text())
    assert report["confusion_matrix"]["labels"] == ["female", "male"] == trainer.labels
    assert report["confusion_matrix"]["matrix"] == matrix.tolist()
    assert report["accuracy"] == pytest.approx((preds == refs).mean())
    for i, name in enumerate(["female", "male"]):
        tp, predicted, support = matrix[i, i], matrix[:, i].sum(), matrix[i].sum()
        assert report["per_class"][name]["support"] == support
        assert report["per_class"][name]["recall"] == pytest.approx(tp / support)
        assert report["per_class"][name]["precision"] == pytest.approx(tp / predicted if predicted else 0.0)
    groups = np.asarray(trainer.data.validation["group"])
    assert set(report["per_group"]) == set(groups)
    for group, scores in report["per_group"].items():
        mask = groups == group
        assert scores["num_samples"] == mask.sum()
        assert scores["accuracy"] == pytest.approx((preds[mask] == refs[mask]).mean())

    png = Image.open(out / "confusion_matrix.png").convert("RGB")
    for i in range(2):
        for j in range(2):
            left, top, _, _ = cell_box(i, j)
            assert png.getpixel((left + 4, top + 4)) == cell_colour(matrix[i, j] / matrix[i].sum())


def test_saved_repo_is_a_gender_pipeline_with_card(vit_run):
    from huggingface_hub import ModelCard

    trainer, out = vit_run
    config = json.loads((out / "config.json").read_text())
    assert config["id2label"] == {"0": "female", "1": "male"}
    custom = config["custom_pipelines"]["hfvision-gender-classification"]
    assert custom["impl"] == "classification.GenderClassificationPipeline"
    assert (out / "classification.py").is_file() and (out / "preprocessor_config.json").is_file()
    assert not (out / "training_args.bin").exists()  # no pickle in the published folder
    assert not list(out.glob(".pipeline-*"))  # staging folder cleaned up

    card = ModelCard.load(out / "README.md")
    assert card.data.pipeline_tag == "image-classification" and "gender-classification" in card.data.tags
    assert card.data.base_model is None  # a local path is not a Hub id
    values = {r.metric_type: r.metric_value for r in card.data.eval_results}
    report = json.loads((out / "metrics.json").read_text())
    assert values["accuracy"] == round(report["accuracy"], 4)
    assert f"| accuracy | {report['accuracy']:.4f} |" in card.text
    assert "**binary** label" in card.text and "| young |" in card.text
    assert 'hfvision.pipeline("gender-classification", model=' in card.text
    repo = "<user>/<repo>"  # not pushed: the card shows a placeholder
    assert f'pipeline(model="{repo}", trust_remote_code=True)' in card.text  # without hfvision: the repo's code
    assert f'pipeline("image-classification", model="{repo}")' in card.text  # or the stock class


def test_saved_folder_runs_as_a_gender_pipeline(vit_run):
    from transformers import AutoImageProcessor, AutoModelForImageClassification

    import hfvision

    trainer, out = vit_run
    classifier = hfvision.pipeline("gender-classification", model=str(out))
    assert type(classifier).__name__ == "GenderClassificationPipeline"
    images, refs = _images(trainer)
    outputs = classifier(images)
    model = AutoModelForImageClassification.from_pretrained(out).eval()
    with torch.no_grad():
        probs = model(**AutoImageProcessor.from_pretrained(out)(images=images, return_tensors="pt")).logits.softmax(-1)
    for i, result in enumerate(outputs):
        assert [r["label"] for r in result] == sorted(
            ["female", "male"], key=lambda x: -probs[i, model.config.label2id[x]]
        )
        for r in result:  # batched uint8 preprocessing in the pipeline vs the image processor: close, not equal
            assert r["score"] == pytest.approx(probs[i, model.config.label2id[r["label"]]].item(), abs=1e-2)


def test_lora_adapter_loads_with_peft_and_matches_the_merged_model(
    tmp_path, tiny_model_dir, two_class_folder, make_config
):
    from peft import PeftModel
    from transformers import AutoImageProcessor, AutoModelForImageClassification

    out = tmp_path / "out"
    config = make_config(
        tiny_model_dir("vit"),
        two_class_folder,
        out,
        lora=True,
        learning_rate=5e-3,
        num_train_epochs=2,
        save_strategy="no",
    )
    trainer = ImageClassificationTrainer(config)
    trainer.train()
    trainer.save_pipeline()

    adapter_config = json.loads((out / "adapter" / "adapter_config.json").read_text())
    assert sorted(adapter_config["target_modules"]) == ["q_proj", "v_proj"]
    assert adapter_config["modules_to_save"] == ["classifier"]

    base = AutoModelForImageClassification.from_pretrained(tiny_model_dir("vit")).eval()
    base_state = {k: v.clone() for k, v in base.state_dict().items()}
    with_adapter = PeftModel.from_pretrained(base, out / "adapter").eval()
    merged = AutoModelForImageClassification.from_pretrained(out).eval()
    processor = AutoImageProcessor.from_pretrained(out)
    images, _ = _images(trainer)
    pixels = processor(images=images, return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        trained = trainer.model.eval()(pixel_values=pixels).logits
        torch.testing.assert_close(with_adapter(pixel_values=pixels).logits, trained, rtol=0, atol=1e-5)
        torch.testing.assert_close(merged(pixel_values=pixels).logits, trained, rtol=0, atol=1e-5)
    # lora_save="adapter": the folder is a PEFT adapter repo (no full weights); "merged": no adapter/ folder
    trainer.args.lora_save = "adapter"
    trainer.save_pipeline(tmp_path / "adapter-only")
    files = {p.name for p in (tmp_path / "adapter-only").iterdir()}
    assert {"adapter_config.json", "adapter_model.safetensors", "preprocessor_config.json", "README.md"} <= files
    assert not files & {"model.safetensors", "config.json", "adapter"}
    again = PeftModel.from_pretrained(
        AutoModelForImageClassification.from_pretrained(tiny_model_dir("vit")), tmp_path / "adapter-only"
    ).eval()
    with torch.no_grad():
        torch.testing.assert_close(again(pixel_values=pixels).logits, trained, rtol=0, atol=1e-5)
    trainer.args.lora_save = "merged"
    trainer.save_pipeline(tmp_path / "merged-only")
    assert (
        not (tmp_path / "merged-only" / "adapter").exists()
        and (tmp_path / "merged-only" / "model.safetensors").exists()
    )

    # only the adapted projections and the head changed
    merged_state = merged.state_dict()
    for key, value in base_state.items():
        changed = not torch.equal(merged_state[key], value)
        assert changed == (("q_proj" in key or "v_proj" in key) and key.endswith("weight") or "classifier" in key), key


class _StopAfterFirstEpoch(TrainerCallback):
    def on_epoch_end(self, args, state, control, **kwargs):
        control.should_training_stop = True


class _CountSteps(TrainerCallback):
    def __init__(self):
        self.steps = []

    def on_step_end(self, args, state, control, **kwargs):
        self.steps.append(state.global_step)


@pytest.mark.parametrize("lora", [False, True], ids=["full", "lora"])
def test_resume_continues_from_the_checkpoint_and_matches_an_uninterrupted_run(
    tmp_path, tiny_model_dir, make_config, lora
):
    data = write_synthetic_imagefolder(tmp_path / "data", per_class=8, seed=2)

    def config(out, **kw):
        return make_config(
            tiny_model_dir("vit"),
            data,
            out,
            num_train_epochs=2,
            per_device_train_batch_size=4,
            lora=lora,
            eval_strategy="no",
            **kw,
        )

    uninterrupted = ImageClassificationTrainer(config(tmp_path / "a"))
    uninterrupted.train()

    interrupted = ImageClassificationTrainer(config(tmp_path / "b"), callbacks=[_StopAfterFirstEpoch()])
    interrupted.train()
    assert interrupted.state.global_step == 3 and (tmp_path / "b" / "checkpoint-3").is_dir()
    # the arguments are kept as JSON, not as Trainer's pickled training_args.bin
    checkpoint = tmp_path / "b" / "checkpoint-3"
    assert not (checkpoint / "training_args.bin").exists()
    saved_args = json.loads((checkpoint / "training_args.json").read_text())
    assert saved_args["num_train_epochs"] == 2 and saved_args["output_dir"] == str(tmp_path / "b")

    counter = _CountSteps()
    resumed = ImageClassificationTrainer(config(tmp_path / "b", resume_from_checkpoint="latest"), callbacks=[counter])
    resumed.train()
    assert counter.steps == [4, 5, 6]  # continued at step 4: nothing of epoch 1 was redone
    assert resumed.state.global_step == uninterrupted.state.global_step == 6
    expected = uninterrupted.model.state_dict()
    for key, value in resumed.model.state_dict().items():
        torch.testing.assert_close(value, expected[key], rtol=0, atol=0, msg=key)

    with pytest.raises(ValueError, match="No valid checkpoint"):
        ImageClassificationTrainer(config(tmp_path / "empty", resume_from_checkpoint="latest")).train()


def test_timm_resnet_lora_new_labels_saved_loadable_by_timm_wrapper_and_peft(tmp_path, small_timm_dir, make_config):
    from peft import PeftModel
    from transformers import AutoModelForImageClassification

    data = write_synthetic_imagefolder(tmp_path / "data", labels=("cat", "dog"), per_class=8, seed=3)
    out = tmp_path / "out"
    config = make_config(
        small_timm_dir, data, out, num_train_epochs=1, save_strategy="no", eval_strategy="no", lora=True
    )
    trainer = ImageClassificationTrainer(config)
    sample = trainer.train_dataset[0]["pixel_values"]
    assert sample.shape == (3, 64, 64)  # timm's training transform at the model's own input size
    trainer.train()
    trainer.save_pipeline()

    saved = json.loads((out / "config.json").read_text())
    assert saved["num_classes"] == 2 and saved["label_names"] == ["cat", "dog"]
    assert "num_classes" not in saved.get("model_args", {}) and saved["pretrained_cfg"]["input_size"] == [3, 64, 64]
    assert "custom_pipelines" not in saved  # image-classification is transformers' own task
    adapter_config = json.loads((out / "adapter" / "adapter_config.json").read_text())
    assert sorted(adapter_config["target_modules"]) == ["conv1", "conv2"]
    assert adapter_config["modules_to_save"] == ["timm_model.fc"]

    merged = AutoModelForImageClassification.from_pretrained(out).eval()
    base = AutoModelForImageClassification.from_pretrained(small_timm_dir, num_labels=2, ignore_mismatched_sizes=True)
    with_adapter = PeftModel.from_pretrained(base, out / "adapter").eval()
    images, _ = _images(trainer)
    pixels = trainer.loaded.processor(images, return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        trained = trainer.model.eval()(pixel_values=pixels).logits
        torch.testing.assert_close(merged(pixel_values=pixels).logits, trained, rtol=0, atol=1e-5)
        # BatchNorm statistics were kept frozen, so base + adapter is exactly the merged model
        torch.testing.assert_close(with_adapter(pixel_values=pixels).logits, trained, rtol=0, atol=1e-5)
