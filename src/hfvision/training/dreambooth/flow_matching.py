"""The flow-matching DreamBooth step for Flux.1 and SD3 / SD3.5, as pure functions, plus the option checks.

The objective (rectified flow, as in diffusers' ``train_dreambooth*_flux.py`` / ``*_sd3.py``): draw σ per sample from
the scheduler's training table with a density chosen by ``weighting_scheme``, mix clean latents and noise linearly,
``x_σ = (1 - σ) x₀ + σ ε``, and regress the velocity ``ε - x₀`` with a per-sample weight. Flux's transformer sees the
latents packed into 2x2 patches with positional image ids, the timestep as ``σ`` (``t / 1000``) and, for the
guidance-distilled dev model, a guidance-scale embedding; SD3's sees unpacked latents and the timestep ``t``.

What is diffusers' is called, not rewritten: the densities and loss weights come from `diffusers.training_utils`
(`compute_density_for_timestep_sampling`, `compute_loss_weighting_for_sd3`), the σ/t tables from
`FlowMatchEulerDiscreteScheduler`, the packing and image ids from `FluxPipeline`'s static helpers.

>>> import torch
>>> from diffusers import FlowMatchEulerDiscreteScheduler
>>> from hfvision.training.dreambooth.flow_matching import flow_target, noisy_latents, sample_timesteps
>>> timesteps, sigmas = sample_timesteps(FlowMatchEulerDiscreteScheduler(shift=3.0), 2, "logit_normal")
>>> x0, noise = torch.zeros(2, 16, 8, 8), torch.ones(2, 16, 8, 8)
>>> noisy_latents(x0, noise, sigmas).shape, flow_target(x0, noise).mean().item()
(torch.Size([2, 16, 8, 8]), 1.0)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from ...models.registry import FLOW_FAMILIES, RESOLUTION_FACTORS, get_base_model

WEIGHTING_SCHEMES = ("sigma_sqrt", "logit_normal", "mode", "cosmap", "none")
# diffusers' script defaults for --logit_mean / --logit_std / --mode_scale
DEFAULT_LOGIT_MEAN, DEFAULT_LOGIT_STD, DEFAULT_MODE_SCALE = 0.0, 1.0, 1.29


def training_tables(scheduler) -> tuple[torch.Tensor, torch.Tensor]:
    """The scheduler's training timesteps and sigmas (``num_train_timesteps`` each, descending).

    Built from a fresh scheduler with the same config, so a previous ``set_timesteps`` (validation) cannot change
    them. With ``use_dynamic_shifting`` (Flux.1-dev) the table is unshifted, as in diffusers' scripts.
    """
    fresh = type(scheduler).from_config(scheduler.config)
    return fresh.timesteps.clone(), fresh.sigmas[: len(fresh.timesteps)].clone()


def sample_timesteps(
    scheduler,
    batch_size: int,
    weighting_scheme: str = "none",
    logit_mean: float = DEFAULT_LOGIT_MEAN,
    logit_std: float = DEFAULT_LOGIT_STD,
    mode_scale: float = DEFAULT_MODE_SCALE,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw one training timestep per sample and its σ.

    ``u`` in [0, 1) comes from `compute_density_for_timestep_sampling` (``"logit_normal"``: sigmoid of a normal with
    ``logit_mean`` / ``logit_std``; ``"mode"``: the SD3 paper's mode density with ``mode_scale``; otherwise uniform);
    the table index is ``int(u * num_train_timesteps)``, clamped into the table (the ``"mode"`` density reaches
    ``u = 1`` at its edge).

    Args:
        scheduler (`FlowMatchEulerDiscreteScheduler`): the base model's scheduler.
        batch_size (`int`): samples to draw.
        weighting_scheme (`str`, *optional*, defaults to ``"none"``): one of ``WEIGHTING_SCHEMES``.
        logit_mean, logit_std, mode_scale (`float`, *optional*): the densities' parameters (diffusers' defaults).
        generator (`torch.Generator`, *optional*): for reproducible draws.
        device (`torch.device` or `str`, *optional*): where to put the results.

    Returns:
        ``(timesteps, sigmas)``: float tensors of shape ``(batch_size,)``; ``timesteps == sigmas * num_train_timesteps``.
    """
    from diffusers.training_utils import compute_density_for_timestep_sampling

    check_weighting_scheme(weighting_scheme)
    u = compute_density_for_timestep_sampling(
        weighting_scheme=weighting_scheme,
        batch_size=batch_size,
        logit_mean=logit_mean,
        logit_std=logit_std,
        mode_scale=mode_scale,
        generator=generator,
    )
    timesteps, sigmas = training_tables(scheduler)
    indices = (u * scheduler.config.num_train_timesteps).long().clamp(0, len(timesteps) - 1)
    return timesteps[indices].to(device), sigmas[indices].to(device)


def expand_sigmas(sigmas: torch.Tensor, ndim: int) -> torch.Tensor:
    """``sigmas`` of shape ``(batch,)`` viewed as ``(batch, 1, ..., 1)`` with ``ndim`` dimensions, for broadcasting."""
    return sigmas.reshape(-1, *([1] * (ndim - 1)))


def noisy_latents(latents: torch.Tensor, noise: torch.Tensor, sigmas: torch.Tensor) -> torch.Tensor:
    """The flow-matching interpolation ``(1 - σ) x₀ + σ ε`` (σ per sample)."""
    sigmas = expand_sigmas(sigmas, latents.ndim).to(latents.dtype)
    return (1.0 - sigmas) * latents + sigmas * noise


def flow_target(latents: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """The regression target, the velocity ``ε - x₀``."""
    return noise - latents


def precondition_outputs(model_pred: torch.Tensor, noisy: torch.Tensor, sigmas: torch.Tensor) -> torch.Tensor:
    """SD3 scripts' ``--precondition_outputs``: turn a velocity prediction into an ``x₀`` prediction,
    ``x_σ - σ v`` (then the target is the clean latents)."""
    return noisy - expand_sigmas(sigmas, noisy.ndim).to(noisy.dtype) * model_pred


def loss_weighting(weighting_scheme: str, sigmas: torch.Tensor, ndim: int = 1) -> torch.Tensor:
    """Per-sample loss weights from `compute_loss_weighting_for_sd3`: ``σ⁻²`` for ``"sigma_sqrt"``,
    ``2 / (π (1 - 2σ + 2σ²))`` for ``"cosmap"``, ones otherwise; shaped ``(batch, 1, ...)`` for ``ndim`` > 1."""
    from diffusers.training_utils import compute_loss_weighting_for_sd3

    check_weighting_scheme(weighting_scheme)
    return compute_loss_weighting_for_sd3(weighting_scheme, expand_sigmas(sigmas, ndim))


def flow_matching_loss(
    model_pred: torch.Tensor, target: torch.Tensor, weighting: torch.Tensor | None = None
) -> torch.Tensor:
    """Weighted MSE: per sample the mean over non-batch dims of ``w (pred - target)²``, then the batch mean (float32).

    Args:
        model_pred (`torch.Tensor`): the transformer's (unpacked) prediction, ``(batch, ...)``.
        target (`torch.Tensor`): `flow_target` (or the latents after `precondition_outputs`).
        weighting (`torch.Tensor`, *optional*): `loss_weighting` broadcastable to ``model_pred``; none = ones.
    """
    error = (model_pred.float() - target.float()) ** 2
    if weighting is not None:
        error = weighting.float() * error
    return error.reshape(error.shape[0], -1).mean(dim=1).mean()


def prior_preservation_loss(
    model_pred: torch.Tensor,
    target: torch.Tensor,
    weighting: torch.Tensor | None = None,
    prior_loss_weight: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """`flow_matching_loss` for a batch of instance samples followed by as many class (prior) samples.

    Returns:
        ``(instance_loss + prior_loss_weight * prior_loss, instance_loss, prior_loss)``; the weights are split
        with the batch.
    """
    if model_pred.shape[0] % 2:
        raise ValueError(
            f"prior preservation needs instance and class samples in equal numbers; got a batch of {model_pred.shape[0]}"
        )
    pred, pred_prior = model_pred.chunk(2)
    target, target_prior = target.chunk(2)
    weights = (None, None) if weighting is None else weighting.chunk(2)
    instance = flow_matching_loss(pred, target, weights[0])
    prior = flow_matching_loss(pred_prior, target_prior, weights[1])
    return instance + prior_loss_weight * prior, instance, prior


def normalize_latents(latents: torch.Tensor, vae_config: Mapping[str, Any]) -> torch.Tensor:
    """VAE latents to the transformer's scale: ``(z - shift_factor) * scaling_factor`` (Flux and SD3 VAEs)."""
    shift = vae_config.get("shift_factor") or 0.0
    return (latents - shift) * vae_config["scaling_factor"]


# --- Flux: 2x2 packing, image ids, guidance -------------------------------------------------------------------------


def pack_latents(latents: torch.Tensor) -> torch.Tensor:
    """``(b, c, h, w)`` latents -> ``(b, h/2 * w/2, 4c)`` tokens (`FluxPipeline._pack_latents`)."""
    from diffusers import FluxPipeline

    b, c, h, w = latents.shape
    if h % 2 or w % 2:
        raise ValueError(f"Flux packs 2x2 latent patches: latent size {h}x{w} must be even (image size / 8)")
    return FluxPipeline._pack_latents(latents, b, c, h, w)


def unpack_latents(tokens: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Inverse of `pack_latents` for a ``height`` x ``width`` latent grid (`FluxPipeline._unpack_latents` with a
    scale factor of 1, i.e. sizes in latent pixels)."""
    from diffusers import FluxPipeline

    return FluxPipeline._unpack_latents(tokens, height, width, 1)


def latent_image_ids(height: int, width: int, device=None, dtype=None) -> torch.Tensor:
    """Positional ids ``(height/2 * width/2, 3)`` of the packed tokens of a ``height`` x ``width`` latent grid:
    ``(0, row, column)`` per token (`FluxPipeline._prepare_latent_image_ids`)."""
    from diffusers import FluxPipeline

    return FluxPipeline._prepare_latent_image_ids(None, height // 2, width // 2, device, dtype)


def guidance_vector(transformer_config: Mapping[str, Any], guidance_scale: float, batch_size: int, device=None):
    """The guidance-scale input, ``(batch_size,)`` filled with ``guidance_scale``, for a transformer with
    ``guidance_embeds`` (Flux.1-dev); ``None`` for one without (schnell)."""
    if not transformer_config.get("guidance_embeds"):
        return None
    return torch.full((batch_size,), float(guidance_scale), device=device, dtype=torch.float32)


def flux_predict(
    transformer,
    noisy: torch.Tensor,
    timesteps: torch.Tensor,
    prompt_embeds: torch.Tensor,
    pooled_prompt_embeds: torch.Tensor,
    text_ids: torch.Tensor,
    guidance_scale: float = 3.5,
) -> torch.Tensor:
    """Run a `FluxTransformer2DModel` on unpacked noisy latents ``(b, 16, h, w)`` and return its prediction
    unpacked to the same shape: packs, adds image ids, passes ``timesteps / 1000`` and the guidance vector."""
    b, _, h, w = noisy.shape
    config = getattr(transformer, "module", transformer).config  # DDP (several processes) wraps the model
    pred = transformer(
        hidden_states=pack_latents(noisy),
        timestep=timesteps / 1000,
        guidance=guidance_vector(config, guidance_scale, b, noisy.device),
        pooled_projections=pooled_prompt_embeds,
        encoder_hidden_states=prompt_embeds,
        txt_ids=text_ids,
        img_ids=latent_image_ids(h, w, noisy.device, noisy.dtype),
        return_dict=False,
    )[0]
    return unpack_latents(pred, h, w)


def sd3_predict(transformer, noisy, timesteps, prompt_embeds, pooled_prompt_embeds) -> torch.Tensor:
    """Run an `SD3Transformer2DModel` on noisy latents (timesteps in [0, 1000])."""
    return transformer(
        hidden_states=noisy,
        timestep=timesteps,
        encoder_hidden_states=prompt_embeds,
        pooled_projections=pooled_prompt_embeds,
        return_dict=False,
    )[0]


# --- bad input: one line each, before any weights load ------------------------------------------------------------


def check_weighting_scheme(weighting_scheme: str) -> None:
    if weighting_scheme not in WEIGHTING_SCHEMES:
        raise ValueError(f"weighting_scheme={weighting_scheme!r} is not one of {', '.join(WEIGHTING_SCHEMES)}")


def check_flow_options(
    family: str,
    *,
    name: str | None = None,
    resolution: int | None = None,
    max_sequence_length: int | None = None,
    sequence_limit: int | None = None,
    guidance_embeds: bool | None = None,
    guidance_scale: float | None = None,
    snr_gamma: float | None = None,
    offset_noise: float | None = None,
    weighting_scheme: str | None = None,
    aspect_ratio_buckets: str | None = None,
    bucket_reso_steps: int | None = None,
) -> None:
    """Refuse options that do not fit the base model's family, with one line naming the flag and the fix.

    Args:
        family (`str`): ``"sd1"``, ``"sd2"``, ``"sdxl"``, ``"flux"`` or ``"sd3"``.
        name (`str`, *optional*): the base model as the user wrote it (for the message).
        resolution (`int`, *optional*): training image size; a multiple of 16 for Flux/SD3 (VAE 8 x patch 2).
        max_sequence_length (`int`, *optional*): requested T5 prompt length; at most ``sequence_limit``.
        sequence_limit (`int`, *optional*): the model's T5 limit (512 Flux.1-dev and SD3, 256 schnell).
        guidance_embeds (`bool`, *optional*): whether the transformer has a guidance embedding (False: schnell).
        guidance_scale (`float`, *optional*): requested guidance-embedding value; refused without the embedding.
        snr_gamma, offset_noise (`float`, *optional*): SD (epsilon/v-prediction) options; refused for flow families.
        weighting_scheme (`str`, *optional*): flow-matching option; refused (unless ``"none"``) for SD families.
        aspect_ratio_buckets (`str`, *optional*), bucket_reso_steps (`int`, *optional*): with aspect-ratio buckets
            on, every bucket side must be a multiple of the family's factor, like ``resolution``.

    >>> check_flow_options("flux", name="flux-schnell", guidance_embeds=False, guidance_scale=3.5)
    Traceback (most recent call last):
    ...
    ValueError: --guidance_scale=3.5: flux-schnell has no guidance embedding (only guidance-distilled Flux.1-dev has); drop --guidance_scale
    """
    label = name or family
    if family not in RESOLUTION_FACTORS:
        raise ValueError(f"unknown family {family!r} for {label}; expected one of {', '.join(RESOLUTION_FACTORS)}")
    flow = family in FLOW_FAMILIES
    if weighting_scheme is not None:
        check_weighting_scheme(weighting_scheme)
    if resolution is not None:
        factor = RESOLUTION_FACTORS[family]
        if resolution <= 0 or resolution % factor:
            low = max(factor, resolution // factor * factor)
            raise ValueError(
                f"--resolution={resolution}: {label} needs a multiple of {factor}"
                f"{' (VAE 8 x patch 2)' if flow else ''}; try {low} or {low + factor}"
            )
    if aspect_ratio_buckets or bucket_reso_steps is not None:
        from .buckets import check_bucket_factor

        check_bucket_factor(RESOLUTION_FACTORS[family], label, aspect_ratio_buckets, bucket_reso_steps)
    if flow:
        for flag, value in (("--snr_gamma", snr_gamma), ("--offset_noise", offset_noise)):
            if value:
                raise ValueError(
                    f"{flag}={value} applies to Stable Diffusion's noise prediction, not to {label} (flow matching); "
                    "drop it (flow models use --weighting_scheme)"
                )
        if max_sequence_length is not None and max_sequence_length <= 0:
            raise ValueError(f"--max_sequence_length={max_sequence_length} must be positive")
        if max_sequence_length is not None and sequence_limit is not None and max_sequence_length > sequence_limit:
            raise ValueError(
                f"--max_sequence_length={max_sequence_length} is over {label}'s T5 limit of {sequence_limit} tokens; "
                f"use {sequence_limit} or less"
            )
        if guidance_scale is not None and guidance_embeds is False:
            raise ValueError(
                f"--guidance_scale={guidance_scale}: {label} has no guidance embedding (only guidance-distilled "
                "Flux.1-dev has); drop --guidance_scale"
            )
    else:
        for flag, value in (("--max_sequence_length", max_sequence_length), ("--guidance_scale", guidance_scale)):
            if value is not None:
                raise ValueError(f"{flag}={value} applies to Flux/SD3 only; {label} is {family} (drop it)")
        if weighting_scheme not in (None, "none"):
            raise ValueError(
                f"--weighting_scheme={weighting_scheme} applies to flow matching (Flux/SD3); {label} is {family} "
                "(use --snr_gamma for min-SNR weighting)"
            )


def check_flow_options_for(key: str, **options: Any) -> None:
    """`check_flow_options` with the family, T5 limit and guidance embedding of registry entry ``key``.

    >>> check_flow_options_for("flux-schnell", max_sequence_length=512)
    Traceback (most recent call last):
    ...
    ValueError: --max_sequence_length=512 is over flux-schnell's T5 limit of 256 tokens; use 256 or less
    """
    entry = get_base_model(key)
    check_flow_options(
        entry.family,
        name=entry.key,
        sequence_limit=entry.max_sequence_length,
        guidance_embeds=entry.guidance_embeds,
        **options,
    )
