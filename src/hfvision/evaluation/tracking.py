"""`QualityTracker`: the quality metrics of a training run, one validation at a time, and the best step so far.

A trainer creates one per run and calls three things:

1. [`QualityTracker.prepare`] once, with the base weights, before the first step: renders the drift references
   (class prompts, fixed seeds) and saves them as PNG under ``{output_dir}/quality/base_class/`` with a fingerprint
   of how they were rendered (``settings.json``: class prompts, seed, images per prompt, call arguments); a resumed
   run whose fingerprint matches reads them back (bit-identical) instead of needing the base weights again.
2. [`QualityTracker.score`] at each validation, with the images it rendered anyway: appends a line to
   ``metrics.jsonl`` and says whether this step is the new best by ``select_best_by``.
3. [`QualityTracker.best_step`] at the end: which step's weights to keep.

On resume (``resume_step``), the records up to that step count and later ones are dropped from ``metrics.jsonl``;
a fresh run moves an earlier run's ``metrics.jsonl`` aside to ``metrics.jsonl.prev``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

from ..utils.io import atomic_write
from ..utils.logging import get_logger
from .dreambooth import (
    METRICS,
    METRICS_FILE,
    ClipEmbedder,
    DinoEmbedder,
    SubjectReference,
    append_metrics,
    drift_score,
    expand_prompts,
    generate_images,
    read_metrics,
    score_images,
    select_best,
)

logger = get_logger(__name__)

BASE_CLASS_DIR = "quality/base_class"
BASE_CLASS_SETTINGS = "settings.json"  # how the PNGs beside it were rendered; they are reused only when it matches


class QualityTracker:
    """Scores every validation of a DreamBooth run and tracks the best step.

    Args:
        output_dir (`str` or `os.PathLike`): the run folder (``metrics.jsonl`` and ``quality/`` go there).
        instance_images (`list[PIL.Image.Image]`): the subject photos (embedded once).
        prompts (`list[str]`): the validation prompts, in the order the trainer renders them.
        clip (`ClipEmbedder`), dino (`DinoEmbedder`): the embedders.
        class_prompts (`list[str]`, *optional*): prompts for the prior-drift score.
        identifier (`str` or `list[str]`, *optional*): the trained token(s), removed for CLIP-T.
        class_noun (`str`, *optional*): what ``{class}`` expands to (in ``class_prompts`` too).
        select_best_by (`str`, *optional*): ``clip_i``, ``dino``, ``clip_t`` or ``drift``.
        resume_step (`int`, *optional*): the step a resumed run starts from; later records are ignored (and
            rewritten as the run gets there again).
        seed (`int`, defaults to 0), num_images_per_prompt (`int`, defaults to 1), call_kwargs: how class images
            are rendered (the same for the base and every validation).
    """

    def __init__(
        self,
        output_dir: str | os.PathLike,
        instance_images: Sequence,
        prompts: Sequence[str],
        *,
        clip: ClipEmbedder,
        dino: DinoEmbedder,
        class_prompts: Sequence[str] | None = None,
        identifier: str | Sequence[str] | None = None,
        class_noun: str | None = None,
        select_best_by: str | None = None,
        resume_step: int | None = None,
        seed: int = 0,
        num_images_per_prompt: int = 1,
        **call_kwargs,
    ):
        if select_best_by is not None and select_best_by not in METRICS:
            raise ValueError(f"select_best_by={select_best_by!r} is not one of {', '.join(METRICS)}")
        if select_best_by == "drift" and not class_prompts:
            raise ValueError("select_best_by='drift' needs class prompts (e.g. the run's class_prompt)")
        self.output_dir = Path(output_dir)
        self.metrics_path = self.output_dir / METRICS_FILE
        first_identifier = identifier if isinstance(identifier, str) or identifier is None else identifier[0]
        self.prompts = list(prompts)
        self.class_prompts = expand_prompts(class_prompts or [], first_identifier, class_noun, "class prompts")
        self.clip, self.dino = clip, dino
        self.identifier, self.class_noun, self.select_best_by = identifier, class_noun, select_best_by
        self.seed, self.num_images_per_prompt, self.call_kwargs = seed, num_images_per_prompt, call_kwargs
        self.reference = SubjectReference.from_images(instance_images, clip, dino)
        self.resume_step = resume_step
        self.base_class_images: list[list] | None = None
        self.history: dict[int, dict] = {}
        if self.metrics_path.is_file():
            self._restart_metrics(resume_step)

    def _restart_metrics(self, resume_step: int | None) -> None:
        """Keep the records up to ``resume_step`` (rewritten atomically); a fresh run moves an old file aside."""
        if resume_step is None:
            old = self.metrics_path.with_name(METRICS_FILE + ".prev")
            os.replace(self.metrics_path, old)
            logger.warning("%s existed from an earlier run; moved it to %s", self.metrics_path, old.name)
            return
        records = read_metrics(self.metrics_path)
        self.history = {s: r for s, r in sorted(records.items()) if s <= resume_step}
        # always rewritten, even when every record is kept: a torn last line (the crash) must not stay in the
        # middle of the file once the resumed run appends after it
        with atomic_write(self.metrics_path, "w") as f:
            f.writelines(json.dumps(r, allow_nan=False) + "\n" for r in self.history.values())

    # 1. before training
    def prepare(self, base_pipeline=None) -> None:
        """Render the base model's class images for the drift score (a resumed run reads back the saved ones when
        they were rendered with this run's class prompts and settings)."""
        if not self.class_prompts:
            return
        folder = self.output_dir / BASE_CLASS_DIR
        if self.resume_step is not None:
            saved = self._read_base(folder)
            if saved is not None:
                self.base_class_images = saved
                return
        if base_pipeline is None:
            raise ValueError(
                f"no base class images rendered with this run's class prompts and settings in {folder}: pass the "
                "base pipeline to prepare() before training"
            )
        self.base_class_images = generate_images(
            base_pipeline, self.class_prompts, self.seed, self.num_images_per_prompt, **self.call_kwargs
        )
        folder.mkdir(parents=True, exist_ok=True)
        (folder / BASE_CLASS_SETTINGS).unlink(missing_ok=True)  # PNGs half rewritten must not pass as a match
        for p, row in enumerate(self.base_class_images):
            for i, image in enumerate(row):
                image.save(folder / f"{p}-{i}.png")
        with atomic_write(folder / BASE_CLASS_SETTINGS, "w") as f:
            f.write(self._base_settings())

    def _base_settings(self) -> str:
        """The fingerprint of the base class images: everything that decides their pixels besides the weights."""
        settings = {
            "class_prompts": self.class_prompts,
            "seed": self.seed,
            "num_images_per_prompt": self.num_images_per_prompt,
            "call_kwargs": self.call_kwargs,
        }
        return json.dumps(settings, sort_keys=True, default=repr, indent=1) + "\n"

    def _read_base(self, folder: Path) -> list[list] | None:
        from PIL import Image

        settings = folder / BASE_CLASS_SETTINGS
        if not settings.is_file() or settings.read_text(encoding="utf-8") != self._base_settings():
            if settings.is_file():
                logger.warning("%s: rendered with other class prompts or settings; rendering them again", folder)
            return None
        paths = [
            [folder / f"{p}-{i}.png" for i in range(self.num_images_per_prompt)]
            for p in range(len(self.class_prompts))
        ]
        if not all(path.is_file() for row in paths for path in row):
            return None
        return [[Image.open(path).convert("RGB") for path in row] for row in paths]

    # 2. at each validation
    def score(self, step: int, images: Sequence[Sequence], pipeline=None, **extra) -> tuple[dict, bool]:
        """Score one validation: ``images[i]`` are the images of ``prompts[i]``; ``pipeline`` (the current weights)
        renders the class prompts for drift. ``extra`` (e.g. ``loss=0.12``) is stored beside the metrics.

        Returns:
            `(dict, bool)`: the metrics, and whether this step is now the best by ``select_best_by``.
        """
        metrics, _ = score_images(
            images, self.prompts, self.reference, self.clip, self.dino, self.identifier, self.class_noun
        )
        if self.class_prompts:
            if self.base_class_images is None:
                raise RuntimeError("call prepare(base_pipeline) before the first score() to enable the drift score")
            if pipeline is None:
                raise ValueError("score() needs the current pipeline to render the class prompts for drift")
            class_images = generate_images(
                pipeline, self.class_prompts, self.seed, self.num_images_per_prompt, **self.call_kwargs
            )
            metrics["drift"] = drift_score(class_images, self.base_class_images, self.dino)
        self.history[step] = append_metrics(self.metrics_path, step, metrics, **extra)
        return metrics, self.best_step == step

    # 3. at the end
    @property
    def best_step(self) -> int | None:
        """The best step so far by ``select_best_by`` (``None`` without a criterion or before any score)."""
        if self.select_best_by is None or not self.history:
            return None
        return select_best(self.history, self.select_best_by)
