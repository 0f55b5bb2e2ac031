"""The DreamBooth objective: noise (or velocity / sample) prediction MSE, optional min-SNR weighting, and the
prior-preservation term on the class half of the batch. Every random draw comes from one explicit generator.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def sample_latents(params: torch.Tensor, generator: torch.Generator, vae_config) -> torch.Tensor:
    """Sample from the VAE's posterior (``latent_dist.parameters``) and scale as the UNet expects."""
    from diffusers.models.autoencoders.vae import DiagonalGaussianDistribution

    latents = DiagonalGaussianDistribution(params.float()).sample(generator=generator)
    shift = getattr(vae_config, "shift_factor", None)
    if shift is not None:
        latents = latents - shift
    return latents * vae_config.scaling_factor


def draw_noise(latents: torch.Tensor, noise_scheduler, generator: torch.Generator, noise_offset: float = 0.0):
    """``(noise, timesteps)`` for a batch of latents (noise offset per sample and channel when asked)."""
    batch, channels = latents.shape[:2]
    noise = torch.randn(latents.shape, generator=generator, dtype=torch.float32)
    if noise_offset:
        noise = noise + noise_offset * torch.randn((batch, channels, 1, 1), generator=generator)
    timesteps = torch.randint(0, noise_scheduler.config.num_train_timesteps, (batch,), generator=generator)
    return noise.to(latents.device), timesteps.to(latents.device)


def prediction_target(noise_scheduler, latents, noise, timesteps) -> torch.Tensor:
    prediction_type = noise_scheduler.config.prediction_type
    if prediction_type == "epsilon":
        return noise
    if prediction_type == "v_prediction":
        return noise_scheduler.get_velocity(latents, noise, timesteps)
    if prediction_type == "sample":
        return latents
    raise ValueError(f"unsupported prediction_type {prediction_type!r}")


def snr_weights(noise_scheduler, timesteps: torch.Tensor, gamma: float) -> torch.Tensor:
    """Min-SNR-gamma loss weights (Hang et al. 2023) for the scheduler's prediction type."""
    from diffusers.training_utils import compute_snr

    snr = compute_snr(noise_scheduler, timesteps)
    clipped = torch.clamp(snr, max=gamma)
    prediction_type = noise_scheduler.config.prediction_type
    if prediction_type == "epsilon":
        return clipped / snr
    if prediction_type == "v_prediction":
        return clipped / (snr + 1)
    return clipped


def dreambooth_loss(
    model_pred, target, num_instance: int, prior_loss_weight: float = 1.0, weights: torch.Tensor | None = None
) -> torch.Tensor:
    """Mean MSE over the instance samples plus ``prior_loss_weight`` x the mean MSE over the class samples.

    The batch holds the instance samples first; samples after ``num_instance`` are class images.
    """
    per_sample = F.mse_loss(model_pred.float(), target.float(), reduction="none").mean(dim=list(range(1, target.ndim)))
    if weights is not None:
        per_sample = per_sample * weights
    loss = per_sample[:num_instance].mean()
    if num_instance < len(per_sample):
        loss = loss + prior_loss_weight * per_sample[num_instance:].mean()
    return loss


def flow_matching_prediction(
    family: str,
    transformer,
    latents: torch.Tensor,
    embeds: torch.Tensor,
    pooled: torch.Tensor,
    scheduler,
    generator: torch.Generator,
    options,
) -> tuple:
    """One flow-matching forward pass (Flux.1 or SD3): draw noise and σ, mix, predict.

    Noise is drawn first, then the timesteps, both from ``generator`` (checkpointed, so a resumed run draws the same).

    Args:
        family (`str`): ``"flux"`` or ``"sd3"``.
        transformer: the (possibly wrapped) `FluxTransformer2DModel` / `SD3Transformer2DModel`.
        latents (`torch.Tensor`): normalised clean latents ``(b, 16, h, w)``.
        embeds, pooled (`torch.Tensor`): the prompt's sequence and pooled embeddings.
        scheduler (`FlowMatchEulerDiscreteScheduler`): the base's scheduler (its training σ table).
        generator (`torch.Generator`): the trainer's noise generator.
        options: the [`DreamBoothConfig`] (``weighting_scheme``, ``logit_mean``, ``logit_std``, ``mode_scale``,
            ``guidance_scale``, ``precondition_outputs``).

    Returns:
        ``(prediction, target, weights)``: prediction and target of the latents' shape, per-sample loss weights.
    """
    from .flow_matching import (
        flow_target,
        flux_predict,
        loss_weighting,
        noisy_latents,
        precondition_outputs,
        sample_timesteps,
        sd3_predict,
    )

    scheme = options.weighting_scheme or "none"
    noise = torch.randn(latents.shape, generator=generator, dtype=torch.float32).to(latents.device)
    timesteps, sigmas = sample_timesteps(
        scheduler,
        latents.shape[0],
        scheme,
        options.logit_mean,
        options.logit_std,
        options.mode_scale,
        generator=generator,
        device=latents.device,
    )
    noisy = noisy_latents(latents, noise, sigmas)
    if family == "flux":
        text_ids = torch.zeros(embeds.shape[1], 3, device=embeds.device, dtype=embeds.dtype)
        guidance = options.guidance_scale if options.guidance_scale is not None else 1.0
        pred = flux_predict(transformer, noisy, timesteps, embeds, pooled, text_ids, guidance)
    else:
        pred = sd3_predict(transformer, noisy, timesteps, embeds, pooled)
    if options.precondition_outputs:
        pred, target = precondition_outputs(pred, noisy, sigmas), latents
    else:
        target = flow_target(latents, noise)
    return pred, target, loss_weighting(scheme, sigmas).reshape(-1)
