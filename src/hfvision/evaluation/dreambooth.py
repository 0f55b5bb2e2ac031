"""DreamBooth quality metrics (the paper's protocol) and best-step selection.

* ``clip_i``: mean cosine similarity of CLIP image embeddings over every (generated, instance image) pair.
* ``dino``: the same with DINO ViT-S/16 CLS embeddings (more sensitive to the subject's identity than CLIP).
* ``clip_t``: mean cosine similarity of each generated image with its prompt, the identifier token removed
  ("a photo of sks dog on the beach" is scored against "a photo of dog on the beach").
* ``drift``: prior drift, ``1 - mean DINO similarity`` between class-prompt images of the evaluated weights and the
  base model's, generated with the same seeds (pair ``i`` against pair ``i``). 0 means the class prior is intact.

Higher is better for all but ``drift``. Metrics of a run are appended to ``metrics.jsonl`` (one JSON object per
validation step) and [`select_best`] picks the step to keep.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..utils.logging import get_logger
from .embedders import DEFAULT_CLIP_MODEL, DEFAULT_DINO_MODEL, ClipEmbedder, DinoEmbedder

logger = get_logger(__name__)

METRICS = ("clip_i", "dino", "clip_t", "drift")
LOWER_IS_BETTER = frozenset({"drift"})
METRICS_FILE = "metrics.jsonl"


# --- similarity math ------------------------------------------------------------------------------------------


def cosine_matrix(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``(len(a), len(b))`` cosine similarities of the rows of ``a`` and ``b`` (normalised here, any scale in)."""
    a = torch.nn.functional.normalize(a.double(), dim=-1)
    b = torch.nn.functional.normalize(b.double(), dim=-1)
    return a @ b.T


def mean_pairwise_similarity(generated: torch.Tensor, reference: torch.Tensor) -> float:
    """Mean cosine over every (generated, reference) pair: CLIP-I and DINO."""
    return float(cosine_matrix(generated, reference).mean())


def mean_paired_similarity(a: torch.Tensor, b: torch.Tensor) -> float:
    """Mean cosine of row ``i`` of ``a`` with row ``i`` of ``b`` (same seed, two models): the drift pairing."""
    if a.shape != b.shape:
        raise ValueError(f"paired similarity needs equal shapes, got {tuple(a.shape)} and {tuple(b.shape)}")
    return float(cosine_matrix(a, b).diagonal().mean())


def strip_identifier(prompt: str, identifiers: str | Sequence[str] | None, class_noun: str | None = None) -> str:
    """``prompt`` for CLIP-T: ``{token}`` and the identifier words removed, ``{class}`` expanded, spaces tidied.

    >>> strip_identifier("a photo of sks dog, on the beach", "sks")
    'a photo of dog, on the beach'
    >>> strip_identifier("a {token} {class} swimming", "sks", class_noun="dog")
    'a dog swimming'
    """
    words = [identifiers] if isinstance(identifiers, str) else list(identifiers or [])
    text = prompt.replace("{token}", " ")
    if class_noun is not None:
        text = text.replace("{class}", class_noun)
    for word in words:
        if word.strip():
            text = re.sub(rf"(?<!\w){re.escape(word.strip())}(?!\w)", " ", text)
    text = re.sub(r"\s+", " ", text)
    return re.sub(r"\s+([,.;:!?])", r"\1", text).strip()


def expand_prompt(prompt: str, identifier: str | None, class_noun: str | None) -> str:
    """The generation prompt: ``{token}`` / ``{class}`` placeholders filled (left as is when unknown)."""
    if identifier is not None:
        prompt = prompt.replace("{token}", identifier)
    if class_noun is not None:
        prompt = prompt.replace("{class}", class_noun)
    return prompt


def expand_prompts(
    prompts: Sequence[str], identifier: str | None, class_noun: str | None, what: str = "prompts"
) -> list[str]:
    """[`expand_prompt`] over ``prompts``, refusing a placeholder that has no value (``what`` names the list in the
    error: ``"prompts"``, ``"class prompts"``)."""
    for placeholder, value, flag in (("{token}", identifier, "identifier"), ("{class}", class_noun, "class_noun")):
        if value is None and any(placeholder in p for p in prompts):
            raise ValueError(
                f"the {what} use {placeholder} but the model records no {flag}; pass {flag}= "
                f"(CLI --{flag.replace('_', '-')}) or write the {what} out"
            )
    return [expand_prompt(p, identifier, class_noun) for p in prompts]


# --- generation -----------------------------------------------------------------------------------------------


@torch.no_grad()
def generate_images(
    pipeline, prompts: Sequence[str], seed: int = 0, num_images_per_prompt: int = 1, **call_kwargs
) -> list[list]:
    """``num_images_per_prompt`` PIL images per prompt; prompt ``i`` uses a CPU generator seeded ``seed + i``.

    The same call on two pipelines of one architecture therefore starts from the same noise (the drift pairing).
    """
    results = []
    for i, prompt in enumerate(prompts):
        generator = torch.Generator("cpu").manual_seed(seed + i)
        out = pipeline(prompt, num_images_per_prompt=num_images_per_prompt, generator=generator, **call_kwargs)
        results.append(list(out.images))
    return results


# --- the evaluation -------------------------------------------------------------------------------------------


@dataclass
class EvaluationResult:
    """What [`evaluate_pipeline`] measured: the metric table, per-prompt rows and the images it made.

    Attributes:
        metrics (`dict[str, float]`): ``clip_i``, ``dino``, ``clip_t`` and (with class prompts) ``drift``.
        per_prompt (`list[dict]`): one row per prompt: ``prompt``, ``clip_text`` (what CLIP-T scored against),
            ``clip_i``, ``dino``, ``clip_t``.
        images (`list[list[PIL.Image.Image]]`): generated images, per prompt.
        class_images, base_class_images (`list[list[PIL.Image.Image]]`): the drift pairs (empty without drift).
    """

    metrics: dict[str, float]
    per_prompt: list[dict] = field(default_factory=list)
    images: list[list] = field(default_factory=list)
    class_images: list[list] = field(default_factory=list)
    base_class_images: list[list] = field(default_factory=list)


@dataclass
class SubjectReference:
    """The subject photos' CLIP and DINO embeddings: computed once per run, compared with every validation.

    >>> reference = SubjectReference.from_images(photos, clip, dino)  # doctest: +SKIP
    """

    clip: torch.Tensor
    dino: torch.Tensor

    @classmethod
    def from_images(cls, images: Sequence, clip: ClipEmbedder, dino: DinoEmbedder) -> SubjectReference:
        if not images:
            raise ValueError("the subject reference needs at least one instance image")
        return cls(clip.embed_images(list(images)), dino.embed_images(list(images)))


def score_images(
    images: Sequence[Sequence],
    prompts: Sequence[str],
    reference: SubjectReference,
    clip: ClipEmbedder,
    dino: DinoEmbedder,
    identifier: str | Sequence[str] | None = None,
    class_noun: str | None = None,
) -> tuple[dict[str, float], list[dict]]:
    """CLIP-I, DINO and CLIP-T of already generated images (``images[i]``: the images of ``prompts[i]``).

    For a trainer that renders validation images anyway: no second generation. Returns ``(metrics, per_prompt)``
    as in [`EvaluationResult`].
    """
    if len(images) != len(prompts) or not prompts:
        raise ValueError(f"{len(images)} rows of images for {len(prompts)} prompts; pass one row per prompt")
    clip_texts = [strip_identifier(p, identifier, class_noun) for p in prompts]
    text_embeds = clip.embed_texts(clip_texts)
    rows, clip_gen_all, dino_gen_all, clip_t_all = [], [], [], []
    for prompt, clip_text, text_embed, row_images in zip(prompts, clip_texts, text_embeds, images):
        clip_gen, dino_gen = clip.embed_images(list(row_images)), dino.embed_images(list(row_images))
        clip_t = cosine_matrix(clip_gen, text_embed[None]).squeeze(1)
        rows.append(
            {
                "prompt": prompt,
                "clip_text": clip_text,
                "clip_i": mean_pairwise_similarity(clip_gen, reference.clip),
                "dino": mean_pairwise_similarity(dino_gen, reference.dino),
                "clip_t": float(clip_t.mean()),
            }
        )
        clip_gen_all.append(clip_gen)
        dino_gen_all.append(dino_gen)
        clip_t_all.append(clip_t)
    metrics = {
        "clip_i": mean_pairwise_similarity(torch.cat(clip_gen_all), reference.clip),
        "dino": mean_pairwise_similarity(torch.cat(dino_gen_all), reference.dino),
        "clip_t": float(torch.cat(clip_t_all).mean()),
    }
    return metrics, rows


def drift_score(class_images: Sequence[Sequence], base_class_images: Sequence[Sequence], dino: DinoEmbedder) -> float:
    """``1 - mean DINO cosine`` of class image ``i`` of the evaluated weights with the base's image ``i``."""
    current = [img for row in class_images for img in row]
    base = [img for row in base_class_images for img in row]
    if len(current) != len(base) or not current:
        raise ValueError(
            f"{len(base)} base class images for {len(current)} evaluated ones; render both with "
            "generate_images and the same class prompts, seed and settings"
        )
    return 1.0 - mean_paired_similarity(dino.embed_images(current), dino.embed_images(base))


def _embedder(value, cls, default: str, device):
    if value is None:
        value = default
    if isinstance(value, (str, os.PathLike)):
        return cls.from_pretrained(value, device=device)
    return value


def evaluate_pipeline(
    pipeline,
    instance_images: Sequence | SubjectReference,
    prompts: Sequence[str],
    *,
    class_prompts: Sequence[str] | None = None,
    base_pipeline=None,
    base_class_images: Sequence[Sequence] | None = None,
    identifier: str | Sequence[str] | None = None,
    class_noun: str | None = None,
    clip: ClipEmbedder | str | None = None,
    dino: DinoEmbedder | str | None = None,
    num_images_per_prompt: int = 1,
    seed: int = 0,
    **call_kwargs,
) -> EvaluationResult:
    """Generate with fixed seeds and measure CLIP-I, DINO, CLIP-T and (given class prompts) prior drift.

    Args:
        pipeline (`DiffusionPipeline`): the weights to evaluate.
        instance_images (`list[PIL.Image.Image]` or [`SubjectReference`]): the subject photos (or their embeddings,
            computed once per run).
        prompts (`list[str]`): evaluation prompts; ``{token}`` / ``{class}`` expand to ``identifier`` / ``class_noun``.
        class_prompts (`list[str]`, *optional*): prompts without the identifier (e.g. "a photo of a dog") for drift;
            ``{class}`` (and ``{token}``) expand as in ``prompts``.
        base_pipeline (`DiffusionPipeline`, *optional*): the base model, to render the drift reference images.
        base_class_images (`list[list[PIL.Image.Image]]`, *optional*): those references, already rendered with
            [`generate_images`] and the same ``seed`` / settings (a trainer renders them once, before training).
        identifier (`str` or `list[str]`, *optional*): the trained token(s), removed for CLIP-T. Defaults to
            ``pipeline.config.instance_token`` for hfvision DreamBooth pipelines.
        class_noun (`str`, *optional*): what ``{class}`` expands to; defaults to ``pipeline.config.class_noun``.
        clip, dino (embedder or model id/folder, *optional*): default ``openai/clip-vit-base-patch32`` and
            ``facebook/dino-vits16``, loaded with transformers' Auto classes.
        num_images_per_prompt (`int`, defaults to 1), seed (`int`, defaults to 0): prompt ``i`` uses seed ``seed + i``.
        call_kwargs: passed to every pipeline call (``num_inference_steps``, ``guidance_scale``, ``height``, ...).

    Returns:
        [`EvaluationResult`]

    Example:

    ```py
    >>> result = evaluate_pipeline(pipe, photos, ["a photo of {token} dog on the beach"], identifier="sks",
    ...                            class_prompts=["a photo of a dog"], base_pipeline=base)  # doctest: +SKIP
    >>> result.metrics  # doctest: +SKIP
    {'clip_i': 0.81, 'dino': 0.66, 'clip_t': 0.30, 'drift': 0.12}
    ```
    """
    # 1. Check inputs (before any model work)
    if not isinstance(instance_images, SubjectReference) and not instance_images:
        raise ValueError("evaluate_pipeline needs at least one instance image")
    if not prompts:
        raise ValueError("evaluate_pipeline needs at least one prompt")
    if num_images_per_prompt < 1:
        raise ValueError(f"num_images_per_prompt={num_images_per_prompt} must be at least 1")
    if class_prompts and base_pipeline is None and base_class_images is None:
        raise ValueError("drift needs base_pipeline or base_class_images beside class_prompts")
    if base_class_images is not None and [len(row) for row in base_class_images] != [num_images_per_prompt] * len(
        class_prompts or ()
    ):
        raise ValueError(
            f"base_class_images has rows of {[len(row) for row in base_class_images]} images for "
            f"{len(class_prompts or ())} class prompts x num_images_per_prompt={num_images_per_prompt}; render them "
            "with generate_images and the same settings"
        )
    config = getattr(pipeline, "config", {})
    identifier = identifier if identifier is not None else config.get("instance_token")
    class_noun = class_noun if class_noun is not None else config.get("class_noun")
    first_identifier = identifier if isinstance(identifier, str) or identifier is None else identifier[0]
    expanded = expand_prompts(prompts, first_identifier, class_noun)
    class_prompts = expand_prompts(class_prompts or [], first_identifier, class_noun, "class prompts")
    device = getattr(pipeline, "device", None)
    clip = _embedder(clip, ClipEmbedder, DEFAULT_CLIP_MODEL, device)
    dino = _embedder(dino, DinoEmbedder, DEFAULT_DINO_MODEL, device)

    # 2. Generate with fixed seeds
    images = generate_images(pipeline, expanded, seed, num_images_per_prompt, **call_kwargs)

    # 3. Embed and score
    if not isinstance(instance_images, SubjectReference):
        instance_images = SubjectReference.from_images(instance_images, clip, dino)
    metrics, rows = score_images(images, prompts, instance_images, clip, dino, identifier, class_noun)
    result = EvaluationResult(metrics, rows, images)

    # 4. Prior drift: class prompts through both weights, same seeds
    if class_prompts:
        result.class_images = generate_images(pipeline, class_prompts, seed, num_images_per_prompt, **call_kwargs)
        if base_class_images is None:
            base_class_images = generate_images(
                base_pipeline, class_prompts, seed, num_images_per_prompt, **call_kwargs
            )
        result.base_class_images = [list(row) for row in base_class_images]
        metrics["drift"] = drift_score(result.class_images, result.base_class_images, dino)
    logger.info("quality: %s", ", ".join(f"{k}={v:.4f}" for k, v in metrics.items()))
    return result


# --- metrics.jsonl and best-step selection --------------------------------------------------------------------


def append_metrics(path: str | os.PathLike, step: int, metrics: Mapping[str, float], **extra) -> dict:
    """Append ``{"step": step, **metrics, **extra}`` as one line to ``path`` (created with its folder); returns it.

    Non-finite numbers (NaN, inf: e.g. a diverged loss) are written as ``null``, which JSON can hold and
    [`select_best`] skips. Each line is flushed and fsynced, so a crash loses at most the line being written; when
    the file does not end with a newline (that torn line), the record starts on a line of its own.
    """
    record = {"step": int(step), **{k: _json_number(float(v) if v is not None else v) for k, v in metrics.items()}}
    record.update({k: _json_number(v) for k, v in extra.items()})
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps(record, allow_nan=False) + "\n"
    with open(path, "a+b") as f:
        if f.seek(0, os.SEEK_END) > 0:
            f.seek(-1, os.SEEK_END)
            if f.read(1) != b"\n":
                line = "\n" + line
        f.write(line.encode("utf-8"))
        f.flush()
        os.fsync(f.fileno())
    return record


def _json_number(value):
    """``None`` for NaN / inf floats, anything else unchanged."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def read_metrics(path: str | os.PathLike) -> dict[int, dict]:
    """``{step: record}`` from a ``metrics.jsonl`` (a later line for the same step wins: e.g. after a resume).

    A torn last line (a crash mid-write) is skipped with a warning; a bad line elsewhere is an error naming it.
    """
    path = Path(path)
    lines = path.read_text(encoding="utf-8").splitlines()
    by_step: dict[int, dict] = {}
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            step = int(record["step"])
        except (ValueError, KeyError, TypeError) as err:
            if number == len(lines):
                logger.warning("%s: skipping the unfinished last line %d", path, number)
                continue
            raise ValueError(f"{path}:{number} is not a metrics record with a 'step' ({err})") from None
        by_step[step] = record
    return by_step


def select_best(metrics_by_step: Mapping[int, Mapping[str, float]] | str | os.PathLike, by: str = "dino") -> int:
    """The step whose ``by`` metric is best: highest ``clip_i`` / ``dino`` / ``clip_t``, lowest ``drift``.

    Ties go to the earliest step (the less trained weights). Steps without the metric (or with NaN) are skipped.

    Args:
        metrics_by_step (`dict[int, dict]` or path): e.g. [`read_metrics`]'s result, or a ``metrics.jsonl`` path.
        by (`str`, defaults to ``"dino"``): one of ``clip_i``, ``dino``, ``clip_t``, ``drift``.

    >>> select_best({100: {"dino": 0.5, "drift": 0.1}, 200: {"dino": 0.7, "drift": 0.3}}, by="drift")
    100
    """
    if by not in METRICS:
        raise ValueError(f"by={by!r} is not a metric; choose one of {', '.join(METRICS)}")
    if isinstance(metrics_by_step, (str, os.PathLike)):
        metrics_by_step = read_metrics(metrics_by_step)
    sign = -1.0 if by in LOWER_IS_BETTER else 1.0
    candidates = [
        (sign * float(m[by]), -int(step))
        for step, m in metrics_by_step.items()
        if m.get(by) is not None and not math.isnan(float(m[by]))
    ]
    if not candidates:
        raise ValueError(f"no step has a {by!r} value; drift needs class prompts and a base model")
    return -max(candidates)[1]
