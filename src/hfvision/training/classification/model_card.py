"""The README.md of a fine-tuned classifier: Hub metadata, labels, data, metrics, usage, intended use and limits."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

GENDER_TASK = "gender-classification"


@dataclass
class CardInfo:
    """What the card describes; filled by the trainer from the run."""

    model_name: str
    task: str
    base_model: str
    labels: list[str]
    report: dict[str, Any]
    train_counts: dict[str, int]
    validation_counts: dict[str, int]
    data_source: str
    hub_dataset: str | None = None
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    lora: bool = False
    lora_save: str = "both"
    head_reinitialised: bool = False
    skipped_images: int = 0
    repo_id: str | None = None


def _is_hub_id(name: str) -> bool:
    return bool(name) and not os.path.exists(name) and not name.startswith((".", "/", "~")) and name.count("/") <= 1


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def render_model_card(info: CardInfo) -> str:
    """Markdown (with YAML metadata) for the repo's README.md.

    >>> text = render_model_card(info)
    >>> text.startswith("---")
    True
    """
    from huggingface_hub import EvalResult, ModelCardData

    report = info.report
    dataset_name = info.hub_dataset or "local image folder"
    card_data = ModelCardData(
        library_name="transformers",
        pipeline_tag="image-classification",
        tags=sorted({"hfvision", "image-classification", info.task, *(["lora", "peft"] if info.lora else [])}),
        base_model=info.base_model if _is_hub_id(info.base_model) else None,
        datasets=[info.hub_dataset] if info.hub_dataset else None,
        metrics=["accuracy", "f1"],
        model_name=info.model_name,
        eval_results=[
            EvalResult(
                task_type="image-classification",
                dataset_type=info.hub_dataset or "imagefolder",
                dataset_name=dataset_name,
                dataset_split="validation",
                metric_type=metric,
                metric_name=name,
                metric_value=round(float(report[key]), 4),
            )
            for metric, name, key in (("accuracy", "Accuracy", "accuracy"), ("f1", "Macro F1", "f1_macro"))
        ],
    )
    repo = info.repo_id or "<user>/<repo>"
    lines = [
        "---",
        card_data.to_yaml(),
        "---",
        "",
        f"# {info.model_name}",
        "",
        f"An image classifier for the `{info.task}` task, fine-tuned from `{info.base_model}` with "
        f"[hfvision](https://github.com/hfvision/hfvision) (`hfvision train classifier`)"
        + (" as a LoRA adapter (PEFT)" if info.lora else "")
        + f". Labels: {', '.join(f'`{x}`' for x in info.labels)}.",
        "",
        "## Usage",
        "",
        "```python",
    ]
    if info.task == "image-classification":
        lines += [
            "from transformers import pipeline",
            "",
            f'classifier = pipeline("image-classification", model="{repo}")',
        ]
    else:
        lines += [
            "import hfvision",
            "",
            f'classifier = hfvision.pipeline("{info.task}", model="{repo}")',
        ]
    lines += [
        'classifier("photo.jpg")',
        "```",
        "",
    ]
    if info.task != "image-classification":
        lines += [
            f'With hfvision installed, `transformers.pipeline("{info.task}", model="{repo}")` works too '
            "(after `import hfvision`). Without hfvision, the pipeline code stored in this repo (`custom_pipelines` "
            "in config.json) can run instead; transformers runs it only with `trust_remote_code=True`, so read it "
            "first. transformers' own image-classification pipeline gives the same scores without any code:",
            "",
            "```python",
            "from transformers import pipeline",
            "",
            f'classifier = pipeline(model="{repo}", trust_remote_code=True)',
            f'classifier = pipeline("image-classification", model="{repo}")',
            "```",
            "",
        ]
    if info.lora and info.lora_save != "merged":
        lines += [
            "The LoRA adapter is in `adapter/`"
            if info.lora_save == "both"
            else "This repo holds only the LoRA adapter; the base model is needed to use it",
            "(`peft.PeftModel.from_pretrained(base_model, ...)`, the classifier head is included as a saved module).",
            "",
        ]
    lines += _data_section(info) + _metrics_section(info) + _training_section(info) + _limitations_section(info)
    return "\n".join(lines).rstrip() + "\n"


def _data_section(info: CardInfo) -> list[str]:
    rows = ["| label | train | validation |", "|---|---|---|"]
    rows += [f"| {x} | {info.train_counts.get(x, 0)} | {info.validation_counts.get(x, 0)} |" for x in info.labels]
    text = [
        "## Training data",
        "",
        f"Source: {info.hub_dataset and f'[{info.hub_dataset}](https://huggingface.co/datasets/{info.hub_dataset})' or 'a local image folder (not published)'}.",
        "",
        *rows,
        "",
    ]
    if info.skipped_images:
        text += [f"{info.skipped_images} unreadable image(s) were skipped.", ""]
    return text


def _metrics_section(info: CardInfo) -> list[str]:
    r = info.report
    text = [
        "## Evaluation",
        "",
        f"On the validation split ({r['num_samples']} images):",
        "",
        "| metric | value |",
        "|---|---|",
        f"| accuracy | {r['accuracy']:.4f} |",
        f"| macro F1 | {r['f1_macro']:.4f} |",
        f"| macro precision | {r['precision_macro']:.4f} |",
        f"| macro recall | {r['recall_macro']:.4f} |",
        "",
        "| label | precision | recall | F1 | support |",
        "|---|---|---|---|---|",
    ]
    for name, s in r["per_class"].items():
        text.append(f"| {name} | {s['precision']:.4f} | {s['recall']:.4f} | {s['f1']:.4f} | {s['support']} |")
    matrix = r["confusion_matrix"]["matrix"]
    text += [
        "",
        "Confusion matrix (rows: true label, columns: predicted):",
        "",
        "| | " + " | ".join(info.labels) + " |",
        "|---" * (len(info.labels) + 1) + "|",
    ]
    text += [f"| **{name}** | " + " | ".join(str(v) for v in row) + " |" for name, row in zip(info.labels, matrix)]
    text += ["", "![confusion matrix](confusion_matrix.png)", ""]
    if "per_group" in r:
        text += [
            "Per group (from the dataset's group column):",
            "",
            "| group | images | accuracy | macro F1 |",
            "|---|---|---|---|",
        ]
        for group, g in r["per_group"].items():
            text.append(f"| {group} | {g['num_samples']} | {g['accuracy']:.4f} | {g['f1_macro']:.4f} |")
        text += ["", f"Largest accuracy gap between groups: {_pct(r['group_accuracy_gap'])}.", ""]
    text += ["All numbers are in `metrics.json`.", ""]
    return text


def _training_section(info: CardInfo) -> list[str]:
    text = ["## Training", ""]
    if info.head_reinitialised:
        text += ["The base model's classifier head was re-initialised for these labels.", ""]
    text += ["| hyperparameter | value |", "|---|---|"]
    text += [f"| {k} | {v} |" for k, v in info.hyperparameters.items()]
    return text + [""]


def _limitations_section(info: CardInfo) -> list[str]:
    text = [
        "## Intended use and limitations",
        "",
        "Validation numbers come from a held-out part of the training data; they do not guarantee accuracy on "
        "photos from other sources, cameras or populations. Evaluate on your own data before relying on the model.",
        "",
    ]
    if info.task == GENDER_TASK:
        text += [
            "This model predicts a **binary** label from appearance. It cannot know anyone's gender identity, which "
            "is not binary for everyone and is not visible in a photo; the labels describe perceived presentation "
            "in the training images. Known risks of such classifiers: lower accuracy for under-represented groups "
            "(age, skin tone, ethnicity), for people whose presentation does not match the stereotypes in the data, "
            "and for children; misgendering harms people. Do not use it to make decisions about individuals, for "
            "surveillance, or to infer protected characteristics; report per-group accuracy (a `group` column "
            "gives one) when you publish results.",
            "",
        ]
        if "per_group" not in info.report:
            text += ["No per-group evaluation was run for this model (the dataset had no group column).", ""]
    return text
