"""Steps 4-6 of [`DreamBoothTrainer.setup`] as functions: explicit inputs in, what the step built out.

The base model with the class images generated from it, the models made ready for training (frozen parts, LoRA
adapters, precision, gradient checkpointing), and the dataset with its sampler and data loader.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ...utils.logging import get_logger
from .class_images import class_image_key, generate_class_images, plan_class_images
from .components import FAMILIES, ResolvedBaseModel, load_base_pipeline, training_noise_scheduler
from .config import DreamBoothConfig
from .data import (
    DreamBoothDataset,
    EpochSampler,
    build_bucketed_data,
    class_image_specs,
    collate,
    load_records,
    pair_by_group,
)
from .lora import TEXT_ENCODER_TARGET_MODULES, add_lora, denoiser_target_modules
from .runtime import free_memory
from .sdxl import validate_time_embedding

logger = get_logger(__name__)


@dataclass
class BaseAndClassImages:
    """What step 4 produced: the base pipeline's components and the prior-preservation images."""

    components: dict[str, Any]
    class_records: list
    class_groups: list[int] | None  # with a concepts list: the subject of each class image


@dataclass
class TrainingModels:
    """What step 5 produced: the base pipeline's models, frozen or trainable, on the training device."""

    denoiser: torch.nn.Module  # the UNet (SD 1.x/2.x/XL) or the transformer (Flux, SD3)
    vae: torch.nn.Module
    inference_scheduler: Any  # the base's own scheduler, for validation images and the saved pipeline
    noise_scheduler: Any  # the training noise schedule (DDPM, or flow matching for Flux/SD3)
    text_encoders: list  # every text encoder of the family, trained ones first
    tokenizers: list
    cast_frozen: bool  # frozen weights are stored in the mixed-precision dtype


def load_base_and_class_images(
    config: DreamBoothConfig, base: ResolvedBaseModel, accelerator, concepts: list | None, default_class_dir: Path
) -> BaseAndClassImages:
    """Load the base pipeline (float32) and the class images, generating the missing ones first.

    A low-precision generation copy (``--prior_generation_precision``, fp16 on GPU by default) is loaded only when
    images are missing, and freed before the float32 training copy loads.
    """
    class_records, plans = [], []
    if config.with_prior_preservation:  # one (folder, prompt, count) per subject
        for class_dir, prompt, count in class_image_specs(config, concepts, default_class_dir):
            key = class_image_key(base.source, base.revision, prompt, config.resolution, config.seed)
            plans.append((Path(class_dir), prompt, key, *plan_class_images(Path(class_dir), key, count)))
    missing = any(plan[-1] for plan in plans)
    generation_dtype = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}.get(
        config.prior_generation_precision, torch.float16 if accelerator.device.type == "cuda" else torch.float32
    )
    if missing and generation_dtype != torch.float32:  # own low-precision copy, freed before training
        low = {}

        def load_low():
            low.setdefault("pipe", load_base_pipeline(base, generation_dtype))
            return low["pipe"]

        for class_dir, prompt, key, _, todo in plans:
            if todo:
                generate_missing_class_images(config, base, accelerator, class_dir, key, todo, load_low, prompt)
        low.clear()
        free_memory()
    pipe = load_base_pipeline(base, torch.float32, config.variant)
    size = None if config.use_aspect_ratio_buckets else config.resolution
    groups = []
    for group, (class_dir, prompt, key, class_paths, todo) in enumerate(plans):
        if todo and generation_dtype == torch.float32:
            generate_missing_class_images(config, base, accelerator, class_dir, key, todo, lambda: pipe, prompt)
        records = load_records(class_paths, [prompt] * len(class_paths), size, strict=config.bad_images == "error")
        class_records += records
        groups += [group] * len(records)  # skipped bad images: the groups stay aligned with the records
    return BaseAndClassImages(
        components=dict(pipe.components),
        class_records=class_records,
        class_groups=groups if concepts is not None and plans else None,
    )


def generate_missing_class_images(
    config: DreamBoothConfig,
    base: ResolvedBaseModel,
    accelerator,
    class_dir: Path,
    key: str,
    missing: list[int],
    load,
    prompt: str,
) -> None:
    """Generate the ``missing`` class images of one folder, split across the processes."""
    logger.info("generating %d class images into %s", len(missing), class_dir)
    meta = {
        "base_model": base.source,
        "revision": base.revision,
        "seed": config.seed,
        "class_prompt": prompt,
        "resolution": config.resolution,
    }
    with accelerator.split_between_processes(missing) as mine:
        pipe = generate_class_images(
            load,
            class_dir,
            key,
            list(mine),
            meta["class_prompt"],
            config.resolution,
            config.seed,
            batch_size=config.sample_batch_size,
            num_inference_steps=config.class_inference_steps,
            device=accelerator.device,
            show_progress=accelerator.is_local_main_process,
            metadata=meta,
        )
        del pipe  # a low-precision generation copy is freed here; the training copy lives on
    accelerator.wait_for_everyone()


def configure_models(
    config: DreamBoothConfig, family: str, components: dict[str, Any], weight_dtype: torch.dtype, device
) -> TrainingModels:
    """Freeze the base, add LoRA adapters or unfreeze what is trained, cast frozen weights, enable checkpointing."""
    spec = FAMILIES[family]
    denoiser, vae, inference_scheduler = components[spec.denoiser], components["vae"], components["scheduler"]
    text_encoders = [components[name] for name in spec.text_encoders]
    tokenizers = [components[name] for name in spec.tokenizers]
    noise_scheduler = training_noise_scheduler(inference_scheduler, spec.flow)
    trainable_encoders = text_encoders[: spec.trainable_text_encoders] if config.train_text_encoder else []
    if family == "sdxl":
        validate_time_embedding(denoiser)
    for model in (vae, denoiser, *text_encoders):
        model.requires_grad_(False)
    if config.use_lora:
        lora = dict(rank=config.rank, alpha=config.lora_alpha, dropout=config.lora_dropout, use_dora=config.use_dora)
        targets = denoiser_target_modules(family, config.lora_layers, config.lora_blocks)
        add_lora(denoiser, target_modules=targets, **lora)
        for encoder in trainable_encoders:
            add_lora(encoder, target_modules=TEXT_ENCODER_TARGET_MODULES, **lora)
    else:
        denoiser.requires_grad_(True)
        for encoder in trainable_encoders:
            encoder.requires_grad_(True)
    # Frozen weights may use the mixed-precision dtype; trainable ones stay float32.
    cast_frozen = weight_dtype != torch.float32
    upcast_vae = weight_dtype == torch.float16 and getattr(vae.config, "force_upcast", False)
    vae.to(device)
    if cast_frozen and not upcast_vae:
        vae.to(dtype=weight_dtype)
    for model in [denoiser] + text_encoders:
        model.to(device)
        quantized = getattr(model, "is_quantized", False)  # --quantize_base: packed weights keep their dtype
        for param in model.parameters():
            if cast_frozen and not param.requires_grad and not quantized:
                param.data = param.data.to(weight_dtype)
    if config.gradient_checkpointing:
        denoiser.enable_gradient_checkpointing()
        for encoder in trainable_encoders:
            # transformers 5 renamed it (the old name warns); keep both working
            enable = getattr(encoder, "activation_checkpointing_enable", encoder.gradient_checkpointing_enable)
            enable()
    denoiser.train()
    for encoder in text_encoders:
        encoder.train(any(encoder is e for e in trainable_encoders))
    return TrainingModels(denoiser, vae, inference_scheduler, noise_scheduler, text_encoders, tokenizers, cast_frozen)


def build_training_data(
    config: DreamBoothConfig,
    family: str,
    instance_records: list,
    class_records: list,
    instance_groups: list[int] | None,
    class_groups: list[int] | None,
    vae,
) -> tuple[torch.utils.data.Dataset, Any, torch.utils.data.DataLoader]:
    """``(dataset, sampler, data loader)``; with ``--cache_latents`` every image is encoded once by ``vae`` here."""
    if config.use_aspect_ratio_buckets:  # batches of one shape; class images cropped to their batch's bucket
        dataset, sampler = build_bucketed_data(config, instance_records, class_records, instance_groups, class_groups)
        if config.cache_latents:
            cache_latents(dataset, vae, config.seed, FAMILIES[family].flow)
        dataloader = torch.utils.data.DataLoader(
            dataset, batch_sampler=sampler, collate_fn=collate, num_workers=config.dataloader_num_workers
        )
        return dataset, sampler, dataloader
    dataset = DreamBoothDataset(
        instance_records,
        class_records,
        config.resolution,
        config.center_crop,
        config.random_flip,
        config.caption_dropout,
    )
    if class_groups is not None:
        dataset.class_pairs = pair_by_group(instance_groups, class_groups)
    if config.cache_latents:
        cache_latents(dataset, vae, config.seed, FAMILIES[family].flow)
    sampler = EpochSampler(len(dataset), config.seed)
    dataloader = torch.utils.data.DataLoader(
        dataset,
        batch_size=config.train_batch_size,
        sampler=sampler,
        collate_fn=collate,
        num_workers=config.dataloader_num_workers,
    )
    return dataset, sampler, dataloader


def cache_latents(dataset, vae, seed: int, fixed_crops: bool) -> None:
    """Encode every image (and bucket) once with the frozen VAE into ``dataset.latent_params``.

    ``fixed_crops``: draw one random crop per image up front (diffusers' Flux/SD3 scripts); otherwise the dataset
    must not crop at random.
    """
    if dataset.has_random_crops() and not fixed_crops:
        raise ValueError("cache_latents needs one crop per image: pass --center_crop or use square images")
    params = {}
    bucketed = hasattr(dataset, "cache_keys")  # one latent per (image, bucket) it can be drawn at
    keys = dataset.cache_keys() if bucketed else range(len(dataset.records))
    with torch.no_grad():
        for key in keys:
            if bucketed:
                example = dataset.bucket_example(*key, None, False)
            else:
                rng = np.random.default_rng([seed, key]) if fixed_crops else None
                example = dataset.example(key, rng=rng)
            pixels = example["pixel_values"][None]
            encoded = vae.encode(pixels.to(vae.device, vae.dtype)).latent_dist.parameters
            params[key] = encoded[0].float().cpu()
    dataset.latent_params = params
