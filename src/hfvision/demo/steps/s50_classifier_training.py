"""Fine-tuning the tiny ViT as a gender-classification pipeline on a generated two-class image folder: per-epoch
validation, the metrics table, the confusion matrix PNG, a per-group report, and a Hub round trip."""

from __future__ import annotations

import shutil
import time

ORDER = 50
TITLE = "Fine-tuning an image classifier: Trainer subclass, evaluate metrics, pipeline repo on the Hub"


def run(ctx) -> None:
    import torch

    from ...testing import save_tiny_vit_classifier
    from ...testing.classifiers import fast_classifier_config
    from ...training.classification import (
        ImageClassificationTrainer,
        write_synthetic_imagefolder,
    )

    sec = ctx.section
    vit = ctx.model_dir("vit (gender)", lambda d: save_tiny_vit_classifier(d))
    work = ctx.work_dir / "s50"
    shutil.rmtree(work, ignore_errors=True)
    data = write_synthetic_imagefolder(work / "data", per_class=20, size=48, seed=0, groups=("group A", "group B"))
    sec.text(
        f"Generated image folder {data}: classes 'female' (red, vertical stripes) and 'male' (blue), 20 images each, "
        "plus a metadata.csv assigning each image to 'group A' or 'group B' (the per-group report). The classes are "
        "synthetic stand-ins: this shows the training machinery, not a gender model."
    )
    out = work / "run"
    config = fast_classifier_config(
        vit, data, out, task="gender-classification", save_strategy="no", hub_model_id="demo/tiny-gender-classifier"
    )
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny model on a shared CPU trains several times faster on one thread
    try:
        start = time.perf_counter()
        trainer = ImageClassificationTrainer(config)
        trainer.train()
        train_seconds = time.perf_counter() - start
        trainer.save_pipeline()
    finally:
        torch.set_num_threads(threads)
    report = trainer.report

    epochs = [
        {
            "epoch": int(h["epoch"]),
            "eval loss": round(h["eval_loss"], 4),
            "eval accuracy": h["eval_accuracy"],
            "eval macro F1": round(h["eval_f1_macro"], 4),
        }
        for h in trainer.state.log_history
        if "eval_accuracy" in h
    ]
    sec.table(epochs, f"Validation after each epoch ({trainer.state.global_step} steps, {train_seconds:.1f} s)")
    rows = [
        {
            "label": name,
            "precision": round(s["precision"], 4),
            "recall": round(s["recall"], 4),
            "F1": round(s["f1"], 4),
            "support": s["support"],
        }
        for name, s in report["per_class"].items()
    ]
    rows.append(
        {
            "label": "(overall)",
            "precision": round(report["precision_macro"], 4),
            "recall": round(report["recall_macro"], 4),
            "F1": round(report["f1_macro"], 4),
            "support": report["num_samples"],
        }
    )
    sec.table(rows, f"metrics.json: accuracy {report['accuracy']:.4f} on {report['num_samples']} validation images")
    sec.table(
        [
            {"group": g, "images": s["num_samples"], "accuracy": round(s["accuracy"], 4)}
            for g, s in report["per_group"].items()
        ],
        "Per-group report (from the dataset's group column)",
    )
    png = ctx.path("s50/confusion_matrix.png")
    shutil.copyfile(out / "confusion_matrix.png", png)
    sec.image(png, "confusion_matrix.png written next to the model")
    saved = sorted(p.name for p in out.iterdir() if not p.name.startswith(("checkpoint-", ".")))
    sec.text(f"Pipeline repo written to {out}: {', '.join(saved)}")

    if ctx.hub_endpoint:
        import hfvision

        start = time.perf_counter()
        trainer.push_to_hub()
        classifier = hfvision.pipeline("gender-classification", model=trainer.hub_model_id)
        images = [trainer.data.validation[i][trainer.data.image_column]["path"] for i in (0, 1)]
        predictions = classifier(images)
        sec.table(
            [
                {
                    "image": path.rsplit("/", 2)[-2] + "/" + path.rsplit("/", 1)[-1],
                    "top label": p[0]["label"],
                    "score": round(p[0]["score"], 4),
                }
                for path, p in zip(images, predictions)
            ],
            f"Pushed to the local Hub as {trainer.hub_model_id} and loaded back with hfvision.pipeline("
            f"'gender-classification') ({type(classifier).__name__}, {time.perf_counter() - start:.2f} s)",
        )
