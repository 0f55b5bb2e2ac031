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


def render_validation(pipeline, prompts: list[str], num_images: int, seed: int, resolution: int,
                      num_inference_steps: int, guidance_scale: float, autocast_dtype=None) -> list[list]:  # fmt: skip
    """``num_images`` PIL images per prompt; prompt ``i`` uses a generator seeded with ``seed + i``."""
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
                guidance_scale=guidance_scale,
                height=resolution,
                width=resolution,
                generator=generator,
            )
            results.append(out.images)
    return results


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
