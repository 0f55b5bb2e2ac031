"""CLI flags generated from the config, YAML defaults, and a CLI run pushed to the local Hub, loaded in a fresh
process as a gender-classification pipeline."""

from __future__ import annotations

import argparse
import json

import pytest

from hfvision.training.classification import cli


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hfvision")
    train = parser.add_subparsers(dest="command").add_parser("train").add_subparsers(dest="trainer")
    classifier = train.add_parser("classifier")
    cli.add_arguments(classifier)
    classifier.set_defaults(func=cli.run)
    return parser


def test_flags_generated_from_the_config_with_yaml_defaults(tmp_path):
    (tmp_path / "train.yaml").write_text("learning_rate: 0.002\nnum_train_epochs: 1\nlora: true\nlora_r: 4\n")
    args, extra = _parser().parse_known_args(
        [
            "train",
            "classifier",
            "--model",
            "m",
            "--data",
            "d",
            "--output-dir",
            "o",
            "--task",
            "gender-classification",
            "--epochs",
            "2",
            "--config",
            str(tmp_path / "train.yaml"),
            "--push-to-hub",
            "me/repo",
            "--gradient_accumulation_steps",
            "2",
        ]
    )
    assert args.passthrough  # the classifier's own parser (parse_config) reads the rest
    config = cli.config_from_args(extra)
    assert (config.model_name_or_path, config.data, config.output_dir, config.task) == (
        "m",
        "d",
        "o",
        "gender-classification",
    )
    assert config.num_train_epochs == 2  # the flag wins over the YAML file
    assert (config.learning_rate, config.lora, config.lora_r) == (0.002, True, 4)  # from YAML
    assert config.push_to_hub and config.hub_model_id == "me/repo"
    assert config.gradient_accumulation_steps == 2  # any TrainingArguments field has its flag
    assert args.func is cli.run

    plain = cli.config_from_args(["--model", "m", "--data", "d"])
    assert not plain.push_to_hub and not plain.lora and plain.num_train_epochs == 3
    assert cli.config_from_args(["--model", "m", "--data", "d", "--push-to-hub"]).hub_model_id is None
    with pytest.raises(ValueError, match="model_name_or_path is required \\(--model\\)"):
        cli.config_from_args(["--data", "d"])
    (tmp_path / "bad.yaml").write_text("learning_rat: 1\n")
    with pytest.raises(ValueError, match="unknown option 'learning_rat'; did you mean 'learning_rate'"):
        cli.config_from_args(["--config", str(tmp_path / "bad.yaml")])


def test_yaml_through_the_config_and_hf_argument_parser(tmp_path):
    from transformers import HfArgumentParser

    from hfvision.training.classification import ImageClassificationConfig

    path = tmp_path / "run.yaml"
    path.write_text("model_name_or_path: m\ndata: d\noutput_dir: o\nlora: true\nnum_train_epochs: 2\n")
    config = ImageClassificationConfig.from_yaml(path, learning_rate=0.01)
    (parsed,) = HfArgumentParser(ImageClassificationConfig).parse_yaml_file(str(path))
    for c in (config, parsed):
        assert (c.model_name_or_path, c.data, c.output_dir, c.lora, c.num_train_epochs) == ("m", "d", "o", True, 2)
    assert config.learning_rate == 0.01 and parsed.learning_rate == 5e-5
    assert config.hyperparameters()["lora_r"] == 8
    path.write_text("model_name_or_path: m\ndata: d\nbad_images: ignore\n")
    with pytest.raises(ValueError, match="bad_images='ignore' must be one of skip, error, off"):
        ImageClassificationConfig.from_yaml(path)


def test_installing_the_flags_is_lazy_and_help_lists_them(run_python):
    # in a fresh interpreter: add_arguments must not import transformers (`hfvision --help` stays fast)
    code = (
        "import argparse, sys\n"
        "from hfvision.training.classification import cli\n"
        "cli.add_arguments(argparse.ArgumentParser(prog='x'))\n"
        "print(sorted(m for m in ('transformers', 'torch', 'datasets') if m in sys.modules))\n"
    )
    assert run_python(code).strip() == "[]"
    from hfvision.training.classification import ImageClassificationConfig
    from hfvision.utils.config_parser import build_config_parser

    help_text = build_config_parser(ImageClassificationConfig, "x", visible=cli.VISIBLE).format_help()
    for flag in ("--model", "--data", "--output-dir", "--epochs", "--lora", "--task", "--push-to-hub"):
        assert flag in help_text
    assert "--gradient_accumulation_steps" not in help_text  # rarely used: listed by --help-all
    all_text = build_config_parser(ImageClassificationConfig, "x", visible=cli.VISIBLE, show_all=True).format_help()
    assert "--gradient_accumulation_steps" in all_text


def test_main_cli_registers_train_classifier():
    pytest.importorskip("hfvision.cli.train", reason="hfvision.cli.train (DreamBooth helper) not present yet")
    from hfvision.cli.main import build_parser

    args, extra = build_parser().parse_known_args(
        ["train", "classifier", "--model", "m", "--data", "d", "--epochs", "1", "--lora"]
    )
    config = cli.config_from_args(extra)
    assert config.lora and config.num_train_epochs == 1 and config.model_name_or_path == "m"
    from hfvision.cli.train import run_classifier

    assert args.func is run_classifier


@pytest.mark.hub
@pytest.mark.slow  # two fresh interpreters importing torch/transformers/datasets: ~20 s idle, 70+ s on a busy machine
def test_cli_trains_on_a_hub_dataset_and_pushes_a_pipeline_that_loads_in_a_fresh_process(
    local_hub, run_python, tiny_model_dir, two_class_folder, tmp_path, one_thread_env
):
    repo, dataset_repo = "user/tiny-gender-classifier", "user/tiny-faces"
    # A Hub dataset with the images embedded as bytes (column "img", ClassLabel "label"), uploaded as parquet.
    train_code = f"""
        import pathlib, datasets
        from huggingface_hub import HfApi
        paths = sorted(pathlib.Path({str(two_class_folder)!r}).glob("*/*.png"))
        table = datasets.Dataset.from_dict(
            {{"img": [{{"bytes": p.read_bytes(), "path": p.name}} for p in paths],
              "label": [p.parent.name for p in paths]}},
            features=datasets.Features({{"img": datasets.Image(),
                                         "label": datasets.ClassLabel(names=["female", "male"])}}),
        )
        pathlib.Path("ds/data").mkdir(parents=True)
        table.to_parquet("ds/data/train-00000-of-00001.parquet")
        api = HfApi()
        api.create_repo({dataset_repo!r}, repo_type="dataset")
        api.upload_folder(repo_id={dataset_repo!r}, repo_type="dataset", folder_path="ds")

        from hfvision.cli.main import main
        raise SystemExit(main([
            "train", "classifier", "--model", {str(tiny_model_dir("vit"))!r}, "--data", {dataset_repo!r},
            "--output-dir", {str(tmp_path / "out")!r}, "--task", "gender-classification", "--epochs", "2",
            "--learning_rate", "1e-3", "--validation_size", "0.25", "--seed", "0", "--disable_tqdm", "true",
            "--dataloader_pin_memory", "false", "--push-to-hub", {repo!r},
        ]))
    """
    stdout = run_python(train_code, hub=local_hub, env=one_thread_env)
    assert f"pushed to the Hub: {repo}" in stdout and "validation: 10 images, accuracy" in stdout
    local_report = json.loads((tmp_path / "out" / "metrics.json").read_text())
    card = (tmp_path / "out" / "README.md").read_text()
    assert f"datasets:\n- {dataset_repo}" in card and f"https://huggingface.co/datasets/{dataset_repo}" in card

    images = sorted(str(p) for p in two_class_folder.glob("*/*.png"))[::7]
    load_code = f"""
        import json
        import torch
        from PIL import Image
        from huggingface_hub import hf_hub_download, list_repo_files
        from transformers import AutoImageProcessor, AutoModelForImageClassification, pipeline

        files = sorted(list_repo_files({repo!r}))
        pipe = pipeline(model={repo!r}, trust_remote_code=True)  # the task is the repo's one custom_pipelines key
        images = [Image.open(p).convert("RGB") for p in {images!r}]
        outputs = pipe(images)
        model = AutoModelForImageClassification.from_pretrained({repo!r}).eval()
        processor = AutoImageProcessor.from_pretrained({repo!r})
        with torch.no_grad():
            probs = model(**processor(images=images, return_tensors="pt")).logits.softmax(-1)
        diff = max(abs(o["score"] - probs[i, model.config.label2id[o["label"]]].item())
                   for i, out in enumerate(outputs) for o in out)
        from_hub_code = type(pipe).__module__
        import hfvision  # now with hfvision: its own pipeline class, no remote code needed
        same = hfvision.pipeline("gender-classification", model={repo!r})(images)
        # the repo's Inference Endpoints handler answers like the pipeline
        import importlib.util, sys
        from huggingface_hub import snapshot_download
        folder = snapshot_download({repo!r})
        spec = importlib.util.spec_from_file_location("handler", folder + "/handler.py")
        handler = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(handler)
        endpoint = handler.EndpointHandler(folder)
        handler_same = [endpoint({{"inputs": image}}) for image in images] == same
        print(json.dumps({{
            "handler_same": handler_same,
            "from_hub_code": from_hub_code,
            "same_with_hfvision": same == outputs,
            "files": files, "pipeline": type(pipe).__name__, "labels": sorted({{o["label"] for out in outputs for o in out}}),
            "max_diff": diff, "metrics": json.load(open(hf_hub_download({repo!r}, "metrics.json"))),
        }}))
    """
    result = json.loads(run_python(load_code, hub=local_hub, env=one_thread_env).strip().splitlines()[-1])
    assert result["pipeline"] == "GenderClassificationPipeline"
    assert result["from_hub_code"].startswith("transformers_modules.")  # the code stored in the repo ran
    assert result["same_with_hfvision"]
    assert result["handler_same"]
    assert result["labels"] == ["female", "male"]
    assert result["max_diff"] < 1e-2  # the pipeline's batched uint8 preprocessing vs the image processor
    assert result["metrics"] == local_report
    files = result["files"]
    for name in (
        "config.json",
        "model.safetensors",
        "preprocessor_config.json",
        "classification.py",
        "README.md",
        "metrics.json",
        "confusion_matrix.png",
    ):
        assert name in files
    assert not [f for f in files if f.startswith("checkpoint-") or f.endswith((".bin", ".pt", ".pth"))]
