"""The run's output folder: the trained pipeline (or LoRA), ``training_config.yaml``, a model card, and the push.

Pipelines are saved through hfvision's `DreamBoothPipeline` / `DreamBoothXLPipeline`, so ``model_index.json`` records
the trained ``instance_token`` and ``class_noun`` and the pipeline's code is shipped beside the weights. Its
``_class_name`` stays diffusers' stock class: ``DiffusionPipeline.from_pretrained(out)`` works as it does for
diffusers' own DreamBooth script, and ``DreamBoothPipeline.from_pretrained(out)`` (or ``custom_pipeline="dreambooth"``
with ``trust_remote_code=True``) gives ``{token}`` prompts. A base model's safety checker is kept, as diffusers does.

Pipeline files are written to a hidden temporary folder and moved into ``output_dir`` one entry at a time, with
``model_index.json`` last, so a folder that has a ``model_index.json`` always holds a complete pipeline.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from ...utils.logging import get_logger
from .config import DreamBoothConfig

logger = get_logger(__name__)

CONFIG_NAME = "training_config.yaml"
OUTPUT_IGNORE_PATTERNS = ["checkpoint-*", "checkpoint-*/**", ".*", ".*/**", "logs/**"]


def move_into(src_dir: Path, dst_dir: Path, last: tuple[str, ...] = ("model_index.json",)) -> None:
    """Move every entry of ``src_dir`` into ``dst_dir`` (replacing same-named entries); ``last`` go last."""
    dst_dir.mkdir(parents=True, exist_ok=True)
    entries = sorted(src_dir.iterdir(), key=lambda p: p.name in last)
    for entry in entries:
        target = dst_dir / entry.name
        if target.is_dir() and not target.is_symlink():
            old = dst_dir / f".{entry.name}.old"
            shutil.rmtree(old, ignore_errors=True)
            os.replace(target, old)
            os.replace(entry, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(entry, target)


def remove_paths(paths: list[Path]) -> None:
    """Delete files and folders (``--overwrite_output_dir``: the previous run's model and checkpoints)."""
    for path in paths:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


def save_pipeline(pipeline, output_dir: Path, stock_class_name: str | None = None) -> None:
    """``pipeline.save_pretrained`` into a temp folder beside ``output_dir``, then moved in.

    ``stock_class_name`` replaces ``_class_name`` in ``model_index.json`` (the other keys stay), so that stock
    ``DiffusionPipeline.from_pretrained`` loads the folder without remote code.
    """
    output_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".pipeline-", dir=output_dir))
    try:
        pipeline.save_pretrained(tmp, safe_serialization=True)
        if stock_class_name:
            index_path = tmp / "model_index.json"
            index = json.loads(index_path.read_text(encoding="utf-8"))
            index["_class_name"] = stock_class_name
            index_path.write_text(json.dumps(index, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        move_into(tmp, output_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _dreambooth_class(family: str):
    """hfvision's DreamBooth pipeline class of ``family``; `hfvision.pipelines` imports only that class's module (the
    others would pull in diffusers' Flux / SD3 / SDXL / ControlNet pipelines and T5 for nothing)."""
    from ... import pipelines
    from ...models.families import get_family

    return getattr(pipelines, get_family(family).dreambooth_pipeline_class)


def dreambooth_pipeline(pipe, config: DreamBoothConfig, family: str, extra: dict | None = None, concepts=None):
    """``pipe``'s components as hfvision's DreamBooth pipeline of ``family``, knowing the trained token and class.

    ``concepts`` (several subjects, ``[{token, class_noun, prompt}]``) is stored in the config as ``concepts``; the
    first subject's token and class are ``instance_token`` and ``class_noun``.
    """
    cls = _dreambooth_class(family)
    token, noun = (concepts[0]["token"], concepts[0]["class_noun"]) if concepts else (None, None)
    pipeline = cls.from_components(
        pipe,
        instance_token=token or config.trained_token,
        class_noun=noun or config.resolved_class_noun,
        **(extra or {}),
    )
    if concepts:
        pipeline.register_to_config(concepts=list(concepts))
    return pipeline


def lora_modelspec(config: DreamBoothConfig, base) -> dict[str, str]:
    """modelspec metadata (architecture, title, trigger word, resolution, base model, date) for the LoRA file."""
    from ...conversion.modelspec import modelspec_metadata

    return modelspec_metadata(
        base.family,
        title=f"DreamBooth LoRA: {config.resolved_instance_prompt}",
        trigger_phrase=" ".join(w for w in (config.trained_token, config.resolved_class_noun) if w) or None,
        resolution=config.resolution,
        base_model=base.source if base.kind in ("hub", "registry") else None,
        lora=True,
        prediction_type=base.prediction_type,
        description=f"Trained with hfvision's DreamBooth trainer on '{config.resolved_instance_prompt}'.",
    )


def model_card_text(config: DreamBoothConfig, base, steps: int, grid_name: str | None) -> str:
    """README.md for the output folder (Hub model card with metadata)."""
    from huggingface_hub import ModelCard, ModelCardData

    base_id = base.source if base.kind in ("hub", "registry") else None
    data = ModelCardData(
        license=base.license or "other",
        base_model=base_id,
        library_name="diffusers",
        tags=["hfvision", "dreambooth", "text-to-image", _family_tag(base.family), "diffusers"]
        + (["lora"] if config.use_lora else []),
        instance_prompt=config.resolved_instance_prompt,
    )
    kind = f"LoRA (rank {config.rank})" if config.use_lora else "full fine-tune"
    lines = [
        "---",
        data.to_yaml(),
        "---",
        "",
        f"# DreamBooth: {config.resolved_instance_prompt}",
        "",
        f"Trained with hfvision's DreamBooth trainer ({kind}) from `{base.name}`"
        + (f" (revision `{base.revision}`)" if base.revision else "")
        + f" for {steps} steps at {config.resolution}px.",
        "",
        f"- Trigger word: `{config.instance_token}`",
        f"- Instance prompt: `{config.resolved_instance_prompt}`",
        f"- Class prompt: `{config.class_prompt}` (prior preservation, weight {config.prior_loss_weight}, "
        f"{config.num_class_images} images)"
        if config.with_prior_preservation
        else "- Prior preservation: off",
        f"- Text encoder: {_text_encoder_summary(config)}",
        f"- Learning rate: {config.learning_rate} ({config.lr_scheduler}), batch {config.train_batch_size} "
        f"x {config.gradient_accumulation_steps} accumulation, seed {config.seed}",
        f"- Licence: inherited from the base model ({base.license or 'see the base model card'})",
        "",
    ]
    if grid_name:
        lines += [f"![samples]({grid_name})", ""]
    usage = (
        "pipe = DiffusionPipeline.from_pretrained(BASE)\npipe.load_lora_weights(REPO)"
        if config.use_lora and not config.merge_lora
        else "pipe = DiffusionPipeline.from_pretrained(REPO)"
    )
    lines += [
        "## Use",
        "",
        "```py",
        "from diffusers import DiffusionPipeline",
        "",
        usage,
        f'image = pipe("{config.resolved_instance_prompt} on the beach").images[0]',
        "```",
        "",
    ]
    if not config.use_lora or config.merge_lora:
        hint = "With hfvision, `DreamBoothPipeline.from_pretrained(REPO)` knows the trigger word: "
        lines += [hint + '`pipe("a photo of {token} on the beach")`.', ""]
    lines += ["The full training options are in `training_config.yaml`.", ""]
    return str(ModelCard("\n".join(lines)))


def _family_tag(family: str | None) -> str:
    return {"flux": "flux", "sd3": "sd3"}.get(family, "stable-diffusion")


def _text_encoder_summary(config: DreamBoothConfig) -> str:
    if not config.train_text_encoder:
        return "frozen"
    lr = config.text_encoder_learning_rate
    if config.text_encoder_steps:
        return f"trained for the first {config.text_encoder_steps} steps (lr {lr}), then frozen"
    return f"trained for the whole run (lr {lr})"


def hub_model_index(output_dir: Path) -> bytes | None:
    """``model_index.json`` as the Hub repo gets it: the shipped DreamBooth class named ``[module, class]``.

    The local folder keeps diffusers' stock ``_class_name`` (stock ``DiffusionPipeline.from_pretrained(out)`` loads it
    like a diffusers script's output, as diffusers' own example tests expect); in the pushed repo
    ``DiffusionPipeline.from_pretrained(repo, trust_remote_code=True)`` returns the DreamBooth class in one call.
    ``None`` when the folder holds no full pipeline with hfvision's shipped code (e.g. a LoRA run).
    """
    path = output_dir / "model_index.json"
    if not path.is_file():
        return None
    index = json.loads(path.read_text(encoding="utf-8"))
    from ...models.families import families_of_pipeline

    families = families_of_pipeline(str(index.get("_class_name")))
    cls = _dreambooth_class(families[0]) if families else None
    if cls is None or not (output_dir / cls._code_files[0]).is_file():
        return None
    index["_class_name"] = [Path(cls._code_files[0]).stem, cls.__name__]
    return (json.dumps(index, indent=2, sort_keys=True) + "\n").encode()


def push_output_to_hub(output_dir: Path, repo_id: str, private: bool = True, base_model: str | None = None) -> str:
    """Create ``repo_id`` if needed and upload ``output_dir`` in one commit (without checkpoints, logs and hidden
    files), with an Inference Endpoints ``handler.py`` + ``requirements.txt`` and the Hub form of
    ``model_index.json`` (:func:`hub_model_index`). ``base_model``: the registry key or Hub id a LoRA applies to."""
    from huggingface_hub import CommitOperationAdd, HfApi
    from huggingface_hub.utils import filter_repo_objects

    from ...hub.endpoints import write_endpoint_files

    is_pipeline = (output_dir / "model_index.json").is_file()
    if is_pipeline:
        write_endpoint_files(output_dir, "pipeline")
    elif base_model is not None:
        write_endpoint_files(output_dir, "lora", base_model=base_model)
    else:
        logger.info("no Inference Endpoints handler: the LoRA's base model is a local path, not on the Hub")
    files = sorted(p.relative_to(output_dir).as_posix() for p in output_dir.rglob("*") if p.is_file())
    files = list(filter_repo_objects(files, ignore_patterns=OUTPUT_IGNORE_PATTERNS))
    index = hub_model_index(output_dir)
    operations = [
        CommitOperationAdd(name, index if name == "model_index.json" and index else str(output_dir / name))
        for name in files
    ]
    api = HfApi()
    api.create_repo(repo_id, private=private, exist_ok=True)
    info = api.create_commit(repo_id, operations=operations, commit_message="Upload DreamBooth model (hfvision)")
    return getattr(info, "commit_url", str(info))


def save_output(
    config: DreamBoothConfig,
    base,
    output_dir: Path,
    unet,
    text_encoders: list,
    build_pipeline,
    cast_frozen: bool,
    sample_images: list | None,
    steps: int,
    concepts: list[dict] | None = None,
) -> Path | None:
    """Everything the run leaves in ``output_dir``; returns the LoRA file for LoRA runs.

    Full fine-tunes write the stock diffusers pipeline. LoRA runs write ``pytorch_lora_weights.safetensors`` (and,
    with ``merge_lora``, the base pipeline with the LoRA fused in). Frozen parts that were cast to a lower precision
    for training are saved from a fresh float32 load of the base, so they stay byte-identical to it.
    """
    import torch

    from .components import FAMILIES, load_base_pipeline, load_safety_components
    from .lora import save_lora
    from .validation import make_grid

    lora_path, pipe = None, None
    if config.use_lora:
        metadata = lora_modelspec(config, base)
        lora_path = save_lora(
            output_dir, base.family, unet, text_encoders, kohya=config.output_kohya_format, metadata=metadata
        )
        if config.merge_lora:
            pipe = load_base_pipeline(base, torch.float32, config.variant)
            pipe.load_lora_weights(output_dir)
            pipe.fuse_lora()
            pipe.unload_lora_weights()
    else:
        pipe = build_pipeline()
        if cast_frozen:
            pipe = load_base_pipeline(base, torch.float32, config.variant)
            setattr(pipe, FAMILIES[base.family].denoiser, unet)
            for name, encoder in zip(FAMILIES[base.family].text_encoders, text_encoders):
                setattr(pipe, name, encoder)
    if pipe is not None:
        pipe = dreambooth_pipeline(pipe, config, base.family, load_safety_components(base), concepts)
        save_pipeline(pipe, output_dir, stock_class_name=FAMILIES[base.family].pipeline_class)
    config.to_yaml(output_dir / CONFIG_NAME)
    grid = None
    if sample_images:
        grid = "samples.png"
        make_grid(sample_images).save(output_dir / grid)
    (output_dir / "README.md").write_text(model_card_text(config, base, steps, grid), encoding="utf-8")
    return lora_path
