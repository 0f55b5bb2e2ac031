"""Class images for prior preservation: generated with the base model when fewer than needed exist.

Generated files are named by a key of (base model, revision, class prompt, resolution, seed) plus their index, so a
rerun, or another subject with the same class, reuses them, and an interrupted generation continues where it
stopped. Image ``i`` is drawn from its own generator seeded by (seed, i), so batching and resuming do not change
which image a given index holds. Files the user put in the folder (any other name) are used first.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ...utils.io import atomic_write
from ...utils.logging import get_logger
from .data import IMAGE_EXTENSIONS

logger = get_logger(__name__)

_GENERATED = re.compile(r"^class-([0-9a-f]{16})-(\d{5})\.png$")


def default_class_dir() -> Path:
    """The shared class-image cache: ``$HFVISION_CACHE/class_images`` (``~/.cache/hfvision`` by default)."""
    root = os.environ.get("HFVISION_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "hfvision")
    return Path(root) / "class_images"


def class_image_key(base_model: str, revision: str | None, prompt: str, resolution: int, seed: int) -> str:
    """16 hex digits identifying what generated a class image (everything but its index)."""
    payload = json.dumps([base_model, revision, prompt, resolution, seed], ensure_ascii=False)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def generated_name(key: str, index: int) -> str:
    return f"class-{key}-{index:05d}.png"


def image_seed(seed: int, index: int) -> int:
    """Seed of class image ``index`` (independent of batch size and of which process generates it)."""
    return int(np.random.SeedSequence([seed, index]).generate_state(1, dtype=np.uint64)[0] % (2**63))


def existing_class_images(class_dir: Path, key: str) -> tuple[list[Path], set[int]]:
    """User-supplied images (sorted) and the indices already generated for ``key``."""
    user, generated = [], set()
    if class_dir.is_dir():
        for path in sorted(class_dir.iterdir()):
            match = _GENERATED.match(path.name)
            if match:
                if match.group(1) == key:
                    generated.add(int(match.group(2)))
            elif path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith("."):
                user.append(path)
    return user, generated


def plan_class_images(class_dir: Path, key: str, needed: int) -> tuple[list[Path], list[int]]:
    """The images to use and the generated indices that are still missing."""
    user, generated = existing_class_images(class_dir, key)
    user = user[:needed]
    count = needed - len(user)
    missing = [i for i in range(count) if i not in generated]
    paths = user + [class_dir / generated_name(key, i) for i in range(count)]
    return paths, missing


def generate_class_images(
    load_pipeline: Callable[[], object],
    class_dir: Path,
    key: str,
    indices: list[int],
    prompt: str,
    resolution: int,
    seed: int,
    batch_size: int = 4,
    num_inference_steps: int = 30,
    device=None,
    show_progress: bool = True,
    metadata: dict | None = None,
):
    """Generate the class images ``indices`` into ``class_dir`` and return the pipeline used (or `None`).

    Runs in batches under ``torch.inference_mode`` with a tqdm bar; every image is written atomically as soon as its
    batch finishes, so an interrupted run loses at most one batch.

    Args:
        load_pipeline (`Callable[[], DiffusionPipeline]`): builds the generation pipeline (only called if needed).
        class_dir (`Path`): destination folder.
        key (`str`): [`class_image_key`] of the settings.
        indices (`list[int]`): image indices to generate.
        prompt (`str`): the class prompt.
        resolution (`int`): image size.
        seed (`int`): base seed; image ``i`` uses [`image_seed`]`(seed, i)`.
        batch_size (`int`, *optional*, defaults to 4): images per pipeline call.
        num_inference_steps (`int`, *optional*, defaults to 30): denoising steps.
        device (`torch.device`, *optional*): where to run.
        metadata (`dict`, *optional*): written once to ``class-{key}.json`` for humans.
    """
    import torch
    from tqdm.auto import tqdm

    if not indices:
        return None
    class_dir.mkdir(parents=True, exist_ok=True)
    if metadata is not None and not (class_dir / f"class-{key}.json").exists():
        with atomic_write(class_dir / f"class-{key}.json", "w") as f:
            json.dump(metadata, f, indent=2)
    pipeline = load_pipeline()
    if device is not None:
        pipeline.to(device)
    pipeline.set_progress_bar_config(disable=True)
    bar = tqdm(total=len(indices), desc="class images", unit="img", disable=not show_progress)
    with torch.inference_mode():
        for start in range(0, len(indices), batch_size):
            chunk = indices[start : start + batch_size]
            generators = [torch.Generator("cpu").manual_seed(image_seed(seed, i)) for i in chunk]
            images = pipeline(
                [prompt] * len(chunk),
                num_inference_steps=num_inference_steps,
                height=resolution,
                width=resolution,
                generator=generators,
            ).images
            for index, image in zip(chunk, images):
                with atomic_write(class_dir / generated_name(key, index), "wb") as f:
                    image.save(f, format="PNG")
            bar.update(len(chunk))
    bar.close()
    return pipeline
