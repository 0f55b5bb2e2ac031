"""The flow-matching step's pure functions against hand computations on constructed tensors, one LoRA run on the tiny
Flux / SD3 transformers that lowers the loss, and the option checks' messages."""

from __future__ import annotations

import math

import pytest
import torch
from diffusers import FlowMatchEulerDiscreteScheduler

from hfvision.training.dreambooth import flow_matching as fm


def _shifted_sigma(index: int, n: int = 1000, shift: float = 1.0) -> float:
    """σ at table position ``index``: ``s = (n - index) / n`` then SD3's shift ``shift s / (1 + (shift - 1) s)``."""
    s = (n - index) / n
    return shift * s / (1 + (shift - 1) * s)


@pytest.mark.parametrize("scheme", fm.WEIGHTING_SCHEMES)
@pytest.mark.parametrize("shift", [1.0, 3.0])
def test_sample_timesteps_follow_the_schedulers_table(scheme, shift):
    scheduler = FlowMatchEulerDiscreteScheduler(shift=shift)
    timesteps, sigmas = fm.sample_timesteps(scheduler, 64, scheme, generator=torch.Generator().manual_seed(0))
    again = fm.sample_timesteps(scheduler, 64, scheme, generator=torch.Generator().manual_seed(0))
    assert torch.equal(timesteps, again[0]) and torch.equal(sigmas, again[1])
    assert timesteps.shape == sigmas.shape == (64,) and timesteps.dtype == torch.float32
    # the scripts look σ up by timestep in the scheduler's own table: same values
    table_t, table_s = scheduler.timesteps, scheduler.sigmas
    looked_up = torch.stack([table_s[(table_t == t).nonzero().item()] for t in timesteps])
    assert torch.equal(sigmas, looked_up)
    torch.testing.assert_close(timesteps, sigmas * 1000, rtol=0, atol=1e-3)
    # and σ is the closed-form shifted schedule at the sampled index
    indices = [(table_t == t).nonzero().item() for t in timesteps]
    expected = torch.tensor([_shifted_sigma(i, shift=shift) for i in indices])
    torch.testing.assert_close(sigmas, expected, rtol=1e-5, atol=1e-6)


def test_sample_timesteps_densities_and_table_independence():
    scheduler = FlowMatchEulerDiscreteScheduler()  # shift 1: σ = 1 - index / 1000
    gen = torch.Generator().manual_seed(1)
    _, uniform = fm.sample_timesteps(scheduler, 20000, "none", generator=gen)
    _, logit = fm.sample_timesteps(scheduler, 20000, "logit_normal", logit_mean=1.0, logit_std=0.5, generator=gen)
    _, mode = fm.sample_timesteps(scheduler, 20000, "mode", mode_scale=1.29, generator=gen)
    assert abs(uniform.mean().item() - 0.5) < 0.01 and abs(uniform.std().item() - 1 / math.sqrt(12)) < 0.01
    # u = sigmoid(N(1, 0.5)) has median sigmoid(1) = 0.731, and σ ≈ 1 - u
    assert abs(logit.median().item() - (1 - 1 / (1 + math.exp(-1.0)))) < 0.01
    assert logit.std().item() < uniform.std().item()
    assert mode.std().item() < uniform.std().item()  # the mode density puts more mass in the middle
    # a scheduler used for validation (set_timesteps) still gives the training table
    scheduler.set_timesteps(4)
    timesteps, sigmas = fm.training_tables(scheduler)
    assert len(timesteps) == len(sigmas) == 1000 and sigmas[0] == 1.0 and abs(sigmas[-1].item() - 0.001) < 1e-6


def test_noisy_latents_target_and_preconditioning_by_hand():
    x0 = torch.full((3, 2, 2, 2), 2.0)
    noise = torch.full((3, 2, 2, 2), -1.0)
    sigmas = torch.tensor([0.0, 0.25, 1.0])
    noisy = fm.noisy_latents(x0, noise, sigmas)
    assert noisy[:, 0, 0, 0].tolist() == [2.0, 1.25, -1.0]
    assert torch.equal(fm.flow_target(x0, noise), torch.full_like(x0, -3.0))
    # a perfect velocity prediction, preconditioned, gives back the clean latents (SD3's --precondition_outputs)
    torch.manual_seed(0)
    x0, noise, sigmas = torch.randn(4, 16, 4, 4), torch.randn(4, 16, 4, 4), torch.rand(4)
    noisy = fm.noisy_latents(x0, noise, sigmas)
    recovered = fm.precondition_outputs(fm.flow_target(x0, noise), noisy, sigmas)
    torch.testing.assert_close(recovered, x0, rtol=0, atol=1e-5)


def test_loss_weighting_values():
    sigmas = torch.tensor([0.5, 0.25, 1.0])
    assert fm.loss_weighting("sigma_sqrt", sigmas).tolist() == [4.0, 16.0, 1.0]
    cosmap = fm.loss_weighting("cosmap", sigmas)
    expected = [2 / (math.pi * (1 - 2 * s + 2 * s * s)) for s in (0.5, 0.25, 1.0)]
    torch.testing.assert_close(cosmap, torch.tensor(expected))
    for scheme in ("none", "logit_normal", "mode"):
        assert torch.equal(fm.loss_weighting(scheme, sigmas), torch.ones(3))
    assert fm.loss_weighting("sigma_sqrt", sigmas, ndim=4).shape == (3, 1, 1, 1)
    with pytest.raises(ValueError, match="weighting_scheme='snr' is not one of sigma_sqrt, logit_normal"):
        fm.loss_weighting("snr", sigmas)


def test_flow_matching_loss_equals_hand_computation():
    pred = torch.tensor([[[1.0, 2.0], [3.0, 4.0]], [[0.0, 0.0], [0.0, 2.0]]])
    target = torch.zeros(2, 2, 2)
    # per sample mean of squares: (1 + 4 + 9 + 16) / 4 = 7.5 and 4 / 4 = 1
    assert fm.flow_matching_loss(pred, target).item() == (7.5 + 1.0) / 2
    weights = torch.tensor([2.0, 0.5]).reshape(2, 1, 1)
    assert fm.flow_matching_loss(pred, target, weights).item() == (2 * 7.5 + 0.5 * 1.0) / 2
    half = fm.flow_matching_loss(pred.half(), target.half(), weights)
    assert half.dtype == torch.float32 and half.item() == (2 * 7.5 + 0.5 * 1.0) / 2


def test_prior_preservation_loss_splits_the_batch_and_its_weights():
    pred = torch.tensor([[1.0, 1.0], [2.0, 2.0], [3.0, 3.0], [4.0, 4.0]])
    target = torch.zeros(4, 2)
    weights = torch.tensor([[1.0], [2.0], [0.5], [0.25]])
    total, instance, prior = fm.prior_preservation_loss(pred, target, weights, prior_loss_weight=0.5)
    assert instance.item() == (1.0 * 1 + 2.0 * 4) / 2  # instance samples 0, 1
    assert prior.item() == (0.5 * 9 + 0.25 * 16) / 2  # class samples 2, 3
    assert total.item() == instance.item() + 0.5 * prior.item()
    with pytest.raises(ValueError, match="equal numbers; got a batch of 3"):
        fm.prior_preservation_loss(pred[:3], target[:3])


def test_flux_packing_image_ids_and_guidance():
    torch.manual_seed(0)
    latents = torch.randn(2, 16, 6, 4)
    packed = fm.pack_latents(latents)
    assert packed.shape == (2, 3 * 2, 64)
    # token (i, j) holds the 2x2 patch at rows 2i..2i+1, columns 2j..2j+1, channel-major
    for i, j, c, di, dj in ((0, 0, 0, 0, 0), (2, 1, 15, 1, 1), (1, 0, 7, 0, 1), (2, 0, 3, 1, 0)):
        assert packed[1, i * 2 + j, c * 4 + di * 2 + dj] == latents[1, c, 2 * i + di, 2 * j + dj]
    assert torch.equal(fm.unpack_latents(packed, 6, 4), latents)
    ids = fm.latent_image_ids(6, 4, dtype=torch.float32)
    assert ids.shape == (6, 3) and ids.tolist() == [[0, i, j] for i in range(3) for j in range(2)]
    with pytest.raises(ValueError, match="latent size 5x4 must be even"):
        fm.pack_latents(torch.zeros(1, 16, 5, 4))
    assert torch.equal(fm.guidance_vector({"guidance_embeds": True}, 3.5, 3), torch.full((3,), 3.5))
    assert fm.guidance_vector({"guidance_embeds": False}, 3.5, 3) is None


def test_normalize_latents_uses_shift_and_scale():
    z = torch.tensor([1.0, 0.1159])
    flux = fm.normalize_latents(z, {"scaling_factor": 0.3611, "shift_factor": 0.1159})
    torch.testing.assert_close(flux, torch.tensor([(1.0 - 0.1159) * 0.3611, 0.0]))
    assert torch.equal(fm.normalize_latents(z, {"scaling_factor": 2.0, "shift_factor": None}), z * 2)


@pytest.mark.parametrize("kind", ["flux", "sd3"])
def test_lora_steps_lower_the_flow_matching_loss(kind):
    from peft import LoraConfig

    from hfvision.testing import tiny_flux_pipeline, tiny_sd3_pipeline

    pipe = tiny_flux_pipeline("dev") if kind == "flux" else tiny_sd3_pipeline("sd3.5")
    transformer = pipe.transformer
    with torch.no_grad():
        if kind == "flux":
            encoded = pipe.encode_prompt("a photo of sks dog", prompt_2=None, max_sequence_length=16)
        else:
            encoded = pipe.encode_prompt(
                "a photo of sks dog", None, None, do_classifier_free_guidance=False, max_sequence_length=16
            )
    transformer.requires_grad_(False)
    targets = ["to_k", "to_q", "to_v", "to_out.0", "ff.net.0.proj", "ff.net.2"]
    transformer.add_adapter(LoraConfig(r=4, lora_alpha=4, init_lora_weights="gaussian", target_modules=targets))
    trainable = [p for p in transformer.parameters() if p.requires_grad]
    assert trainable and all("lora" in n for n, p in transformer.named_parameters() if p.requires_grad)
    gen = torch.Generator().manual_seed(0)
    latents = fm.normalize_latents(torch.randn(2, 16, 8, 8, generator=gen), pipe.vae.config)
    noise = torch.randn(latents.shape, generator=gen)
    timesteps, sigmas = fm.sample_timesteps(pipe.scheduler, 2, "logit_normal", generator=gen)
    noisy = fm.noisy_latents(latents, noise, sigmas)
    target, weighting = fm.flow_target(latents, noise), fm.loss_weighting("logit_normal", sigmas, latents.ndim)

    def loss():
        if kind == "flux":
            prompt_embeds, pooled, text_ids = encoded
            pred = fm.flux_predict(
                transformer,
                noisy,
                timesteps,
                prompt_embeds.expand(2, -1, -1),
                pooled.expand(2, -1),
                text_ids,
                guidance_scale=3.5,
            )
        else:
            prompt_embeds, _, pooled, _ = encoded
            pred = fm.sd3_predict(transformer, noisy, timesteps, prompt_embeds.expand(2, -1, -1), pooled.expand(2, -1))
        assert pred.shape == latents.shape
        return fm.flow_matching_loss(pred, target, weighting)

    optimizer = torch.optim.AdamW(trainable, lr=3e-2)
    losses = []
    for _ in range(15):
        optimizer.zero_grad()
        value = loss()
        value.backward()
        optimizer.step()
        losses.append(value.item())
    losses.append(loss().item())
    assert all(b < a for a, b in zip(losses, losses[1:])), losses  # a fixed batch: every step helps
    assert losses[-1] < 0.85 * losses[0]


@pytest.mark.parametrize("kind", ["flux", "sd3"])
def test_training_forward_matches_the_pipelines_own_denoising_step(kind):
    """One Euler step of the stock pipeline from σ to 0 is ``x_σ - σ v``: with the same latents, prompt embeddings
    and σ, `flux_predict` / `sd3_predict` must give the same ``v`` (timestep scale, packing, image ids, guidance)."""
    from diffusers import FluxPipeline, StableDiffusion3Pipeline

    from hfvision.testing import tiny_flux_components, tiny_sd3_components

    sigma = 0.75
    scheduler = FlowMatchEulerDiscreteScheduler()  # unshifted, so the step's timestep is exactly 1000 σ
    gen = torch.Generator().manual_seed(0)
    noisy = torch.randn(1, 16, 8, 8, generator=gen)
    if kind == "flux":
        pipe = FluxPipeline(**{**tiny_flux_components("dev"), "scheduler": scheduler})
        embeds, pooled, text_ids = pipe.encode_prompt("a photo of sks dog", None, max_sequence_length=16)
        inputs = dict(prompt_embeds=embeds, pooled_prompt_embeds=pooled, latents=fm.pack_latents(noisy))
        with torch.no_grad():
            v = fm.flux_predict(pipe.transformer, noisy, torch.tensor([1000 * sigma]), embeds, pooled, text_ids, 2.0)
        expected = fm.pack_latents(noisy - sigma * v)
    else:
        pipe = StableDiffusion3Pipeline(**{**tiny_sd3_components("sd3.5"), "scheduler": scheduler})
        embeds, _, pooled, _ = pipe.encode_prompt(
            "a photo of sks dog", None, None, do_classifier_free_guidance=False, max_sequence_length=16
        )
        inputs = dict(prompt_embeds=embeds, pooled_prompt_embeds=pooled, latents=noisy)
        with torch.no_grad():
            v = fm.sd3_predict(pipe.transformer, noisy, torch.tensor([1000 * sigma]), embeds, pooled)
        expected = noisy - sigma * v
    pipe.set_progress_bar_config(disable=True)
    out = pipe(
        height=64,
        width=64,
        num_inference_steps=1,
        sigmas=[sigma],
        guidance_scale=2.0 if kind == "flux" else 1.0,
        output_type="latent",
        max_sequence_length=16,
        **inputs,
    ).images
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-6)
    assert (v - fm.flow_target(noisy, torch.zeros_like(noisy))).abs().max() > 1e-3  # v is a real prediction
