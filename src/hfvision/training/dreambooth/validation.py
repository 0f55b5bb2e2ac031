"""Validation images: render the validation prompts with the in-training model and a fixed seed, save them under
``samples/step-{step}/`` and log them to the trackers. Uses only its own generators (training RNGs are untouched).
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np
import torch

from ...utils.io import atomic_write
from ...utils.logging import get_logger

logger = get_logger(__name__)


def render_validation(
    pipeline,
    prompts: list[str],
    num_images: int,
    seed: int,
    resolution: int,
    num_inference_steps: int,
    guidance_scale: float | None,
    autocast_dtype=None,
) -> list[list]:
    """``num_images`` PIL images per prompt; prompt ``i`` uses a generator seeded with ``seed + i``.

    ``guidance_scale=None`` leaves the pipeline's default (Flux.1-dev's guidance embedding 3.5, SD3 7.0, SD 7.5,
    SDXL 5.0), as diffusers' DreamBooth scripts render their validation images."""
    device = pipeline.device
    autocast = (
        torch.autocast(device.type, dtype=autocast_dtype)
        if autocast_dtype not in (None, torch.float32)
        else contextlib.nullcontext()
    )
    results = []
    with torch.no_grad(), autocast:
        for i, prompt in enumerate(prompts):
            generator = torch.Generator("cpu").manual_seed(seed + i)
            out = pipeline(
                prompt,
                num_images_per_prompt=num_images,
                num_inference_steps=num_inference_steps,
                height=resolution,
                width=resolution,
                generator=generator,
                **guidance_kwargs(guidance_scale),
            )
            results.append(out.images)
    return results


def guidance_kwargs(guidance_scale: float | None) -> dict:
    """``{"guidance_scale": value}``, or ``{}`` to keep the pipeline's default."""
    return {} if guidance_scale is None else {"guidance_scale": guidance_scale}


def save_samples(images: list[list], prompts: list[str], folder: Path) -> list[Path]:
    """Write ``{prompt index}-{image index}.png`` files and a ``prompts.txt`` into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for p, row in enumerate(images):
        for i, image in enumerate(row):
            path = folder / f"{p}-{i}.png"
            with atomic_write(path, "wb") as f:
                image.save(f, format="PNG")
            paths.append(path)
    with atomic_write(folder / "prompts.txt", "w") as f:
        f.write("\n".join(prompts) + "\n")
    return paths


def make_grid(images: list) -> object:
    """One PIL image with ``images`` side by side (rows of up to 4)."""
    from PIL import Image

    cols = min(4, len(images))
    rows = (len(images) + cols - 1) // cols
    w, h = images[0].size
    grid = Image.new("RGB", (cols * w, rows * h), "white")
    for k, image in enumerate(images):
        grid.paste(image, ((k % cols) * w, (k // cols) * h))
    return grid


def log_to_trackers(accelerator, images: list[list], prompts: list[str], step: int) -> None:
    """Send the images to every active tracker that takes images (tensorboard, wandb)."""
    for tracker in accelerator.trackers:
        if tracker.name == "tensorboard":
            writer = tracker.writer
            for p, row in enumerate(images):
                arrays = np.stack([np.asarray(img) for img in row])
                writer.add_images(f"validation/{p}", arrays, step, dataformats="NHWC")
                writer.add_text(f"validation/{p}/prompt", prompts[p], step)
            writer.flush()
        elif tracker.name == "wandb":
            import wandb

            tracker.log(
                {"validation": [wandb.Image(img, caption=prompts[p]) for p, row in enumerate(images) for img in row]},
                step=step,
            )


# --- quality metrics (CLIP-I, DINO, CLIP-T, drift) and the best step ---------------------------------------------

BEST_WEIGHTS_DIR = ".best-weights"  # hidden: never pushed, removed once the output is written


def build_quality_tracker(
    config,
    output_dir: Path,
    instance_images: list,
    prompts: list[str],
    identifiers,
    class_noun: str | None,
    class_prompts: list[str] | None,
    resume_step: int | None,
    device=None,
):
    """A [`~hfvision.evaluation.QualityTracker`] for a run: embedders from ``--quality_clip_model`` /
    ``--quality_dino_model``; class images for the drift score rendered like the validation images."""
    from ...evaluation import ClipEmbedder, DinoEmbedder, QualityTracker

    clip = ClipEmbedder.from_pretrained(config.quality_clip_model, device=device)
    dino = DinoEmbedder.from_pretrained(config.quality_dino_model, device=device)
    return QualityTracker(
        output_dir,
        instance_images,
        prompts,
        clip=clip,
        dino=dino,
        class_prompts=class_prompts,
        identifier=identifiers,
        class_noun=class_noun,
        select_best_by=config.select_best_by,
        resume_step=resume_step,
        seed=config.seed,
        num_images_per_prompt=1,
        num_inference_steps=config.validation_inference_steps,
        height=config.resolution,
        width=config.resolution,
        **guidance_kwargs(config.validation_guidance_scale),
    )


def log_quality(accelerator, metrics: dict, images: list[list], prompts: list[str], step: int) -> None:
    """Metrics to every tracker (``quality/<name>``), and the prompts x images grid to TensorBoard."""
    from ...evaluation import log_grids_to_tensorboard

    accelerator.log({f"quality/{k}": v for k, v in metrics.items()}, step=step)
    for tracker in accelerator.trackers:
        if tracker.name == "tensorboard":
            log_grids_to_tensorboard(tracker.writer, {step: images}, prompts)


def append_quality_to_card(readme: Path, metrics_by_step: dict, best_step: int | None, best_by: str | None) -> None:
    """Add the metrics table (and the kept step) to the model card written by the output step."""
    from ...evaluation import metrics_markdown

    if not metrics_by_step or not readme.is_file():
        return
    section = ["", metrics_markdown(metrics_by_step, best_step, best_by), ""]
    if best_step is not None:
        section += [f"These weights are step {best_step}'s, the best by {best_by} (`--select_best_by`).", ""]
    with open(readme, "a", encoding="utf-8") as f:
        f.write("\n".join(section))


def quality_tracker_for_run(
    config, concepts: list | None, instance_records: list, output_dir: Path, resume_step: int | None, device=None
):
    """[`build_quality_tracker`] with a run's references: its distinct instance photos, validation prompts,
    trained token(s) and class prompts (for the drift score)."""
    from PIL import Image

    from .data import concept_summary

    unique = {id(r): r for r in instance_records}.values()
    tokens = [c["token"] for c in concept_summary(concepts)] if concepts else config.trained_token
    if concepts:
        class_prompts = [c.class_prompt for c in concepts if c.class_prompt] or None
    else:
        class_prompts = [config.expand(config.class_prompt)] if config.with_prior_preservation else None
    return build_quality_tracker(
        config,
        output_dir,
        [Image.fromarray(r.pixels) for r in unique],
        [config.expand(p) for p in config.validation_prompt],
        tokens,
        config.resolved_class_noun,
        class_prompts,
        resume_step,
        device,
    )


def score_validation(quality, accelerator, step: int, pipe, images: list[list], prompts: list[str], loss) -> bool:
    """Score one validation with the run's [`QualityTracker`] and log it; returns whether this step is the best."""
    metrics, is_best = quality.score(step, images, pipeline=pipe, loss=loss)
    log_quality(accelerator, metrics, images, prompts, step)
    logger.info("step %d quality: %s", step, ", ".join(f"{k}={v:.4f}" for k, v in metrics.items()))
    return is_best


def save_best_weights(output_dir: Path, step: int, save_weights) -> None:
    """Keep the weights of the best step so far in the hidden ``BEST_WEIGHTS_DIR`` (replaced atomically)."""
    import shutil

    best, tmp = output_dir / BEST_WEIGHTS_DIR, output_dir / f"{BEST_WEIGHTS_DIR}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    save_weights(tmp)
    shutil.rmtree(best, ignore_errors=True)
    tmp.rename(best)
    (best / "step").write_text(str(step))


def best_weights_folder(best: int, output_dir: Path, checkpoints_dir: Path) -> Path:
    """Where the weights of step ``best`` are: the hidden best-weights folder, else that step's checkpoint."""
    folder = output_dir / BEST_WEIGHTS_DIR
    if not (folder / "step").is_file() or int((folder / "step").read_text()) != best:
        folder = checkpoints_dir / f"checkpoint-{best}"  # e.g. a resumed run: the checkpoint has them
        if not folder.is_dir():
            raise RuntimeError(
                f"the weights of the best step {best} are in neither {output_dir / BEST_WEIGHTS_DIR} "
                f"nor {folder}; set --checkpointing_steps to a multiple of --validation_steps"
            )
    return folder


def finish_quality(config, quality, best: int | None, output_dir: Path, samples_dir: Path) -> None:
    """Model-card metrics, ``report.html``, and the best-weights folder removed."""
    import shutil

    from ...evaluation import write_run_report

    if quality is not None:
        append_quality_to_card(output_dir / "README.md", quality.history, best, config.select_best_by)
        shutil.rmtree(output_dir / BEST_WEIGHTS_DIR, ignore_errors=True)
    if config.validation_prompt and any(samples_dir.glob("step-*")):
        path = write_run_report(
            output_dir,
            config.select_best_by if best is not None else None,
            samples_dir=samples_dir,
            logging_dir=config.logging_dir,
        )
        logger.info("report: %s", path)
