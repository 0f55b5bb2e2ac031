"""The training objective against an independent computation with diffusers' own pieces (peer check), for SD1
(epsilon), SD2 (v-prediction) and SDXL (two text encoders, size/crop conditioning); and an SDXL LoRA run."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hfvision.training import DreamBoothConfig, DreamBoothTrainer


def _reference_loss(base_dir, family, batch, generator, prior_loss_weight, snr_gamma=None, noise_offset=0.0):
    from diffusers import DDPMScheduler, DiffusionPipeline
    from diffusers.training_utils import compute_snr

    pipe = DiffusionPipeline.from_pretrained(base_dir)
    scheduler = DDPMScheduler.from_pretrained(base_dir, subfolder="scheduler")
    dist = pipe.vae.encode(batch["pixel_values"]).latent_dist
    latents = dist.sample(generator=generator) * pipe.vae.config.scaling_factor
    noise = torch.randn(latents.shape, generator=generator)
    if noise_offset:
        noise = noise + noise_offset * torch.randn((latents.shape[0], latents.shape[1], 1, 1), generator=generator)
    timesteps = torch.randint(0, scheduler.config.num_train_timesteps, (latents.shape[0],), generator=generator)
    noisy = scheduler.add_noise(latents, noise, timesteps)
    added = None
    if family == "sdxl":
        embeds, _, pooled, _ = pipe.encode_prompt(batch["captions"], device="cpu", do_classifier_free_guidance=False)
        ids = [[*o, *c, 64, 64] for o, c in zip(batch["original_sizes"].tolist(), batch["crop_top_left"].tolist())]
        added = {"text_embeds": pooled, "time_ids": torch.tensor(ids, dtype=torch.float32)}
    else:
        embeds, _ = pipe.encode_prompt(batch["captions"], "cpu", 1, do_classifier_free_guidance=False)
    pred = pipe.unet(noisy, timesteps, embeds, added_cond_kwargs=added).sample
    target = (
        noise if scheduler.config.prediction_type == "epsilon" else scheduler.get_velocity(latents, noise, timesteps)
    )
    per_sample = ((pred - target) ** 2).mean(dim=(1, 2, 3))
    if snr_gamma:
        snr = compute_snr(scheduler, timesteps)
        per_sample = per_sample * torch.minimum(snr, torch.full_like(snr, snr_gamma)) / snr
    n = int(batch["num_instance"])
    return per_sample[:n].mean() + prior_loss_weight * per_sample[n:].mean()


@pytest.mark.parametrize(
    "family, extra",
    [("sd1", {"snr_gamma": 5.0, "noise_offset": 0.1}), ("sd2", {}), ("sdxl", {})],
    ids=["sd1-epsilon-snr-offset", "sd2-v-prediction", "sdxl"],
)
def test_loss_matches_a_diffusers_reference(family, extra, tiny_kwargs, tiny_model_dir):
    kwargs = tiny_kwargs(family, prior_loss_weight=0.5, **extra)
    trainer = DreamBoothTrainer(DreamBoothConfig(**kwargs))
    trainer.setup()
    assert trainer.noise_scheduler.config.prediction_type == ("v_prediction" if family == "sd2" else "epsilon")
    generator = torch.Generator().set_state(trainer.noise_generator.get_state())
    trainer.sampler.set_epoch(0)
    batch = next(iter(trainer.train_dataloader))
    assert batch["pixel_values"].shape == (4, 3, 64, 64)  # 2 instance + 2 class images
    with torch.no_grad():
        loss = trainer.compute_loss(batch)
        reference = _reference_loss(tiny_model_dir(family), family, batch, generator, 0.5, **extra)
    torch.testing.assert_close(loss, reference, rtol=1e-5, atol=1e-6)


def test_sdxl_lora_loads_with_load_lora_weights(tiny_kwargs, tiny_model_dir, train_in_process):
    from diffusers import StableDiffusionXLPipeline

    kwargs = tiny_kwargs("sdxl", use_lora=True, rank=4, train_text_encoder=True, max_train_steps=2)
    trainer, result = train_in_process(kwargs)
    assert result.lora_weights.name == "pytorch_lora_weights.safetensors"
    call = dict(num_inference_steps=2, height=64, width=64, output_type="np")
    expected = trainer.build_pipeline()("a photo of sks person", generator=torch.Generator().manual_seed(0), **call)
    pipe = StableDiffusionXLPipeline.from_pretrained(tiny_model_dir("sdxl"))
    pipe.load_lora_weights(result.output_dir)
    got = pipe("a photo of sks person", generator=torch.Generator().manual_seed(0), **call)
    assert np.abs(expected.images - got.images).max() <= 1e-6
    from safetensors import safe_open

    with safe_open(result.lora_weights, "pt") as f:
        prefixes = {k.split(".")[0] for k in f.keys()}
    assert prefixes == {"unet", "text_encoder", "text_encoder_2"}


def test_cached_latents_and_text_embeddings_give_the_same_loss(tiny_kwargs):
    """cache_latents / pre_compute_text_embeddings change the cost of a step, not its math."""
    kwargs = tiny_kwargs(center_crop=True, cache_latents=True, pre_compute_text_embeddings=True)
    trainer = DreamBoothTrainer(DreamBoothConfig(**kwargs))
    trainer.setup()
    trainer.sampler.set_epoch(0)
    cached = next(iter(trainer.train_dataloader))
    assert "latent_params" in cached and "pixel_values" not in cached
    state = trainer.noise_generator.get_state()
    with torch.no_grad():
        loss_cached = trainer.compute_loss(cached)
        trainer.dataset.latent_params = None  # the same items, encoded by the VAE on the fly
        trainer.prompt_encoder.cache_enabled = False
        fresh = next(iter(trainer.train_dataloader))
        assert fresh["captions"] == cached["captions"]
        trainer.noise_generator.set_state(state)
        loss_fresh = trainer.compute_loss(fresh)
    torch.testing.assert_close(loss_cached, loss_fresh, rtol=1e-5, atol=1e-6)


def test_single_file_base_is_recognised_before_loading(tiny_model_dir, tmp_path):
    from hfvision.conversion import to_single_file
    from hfvision.training.dreambooth.components import load_base_pipeline, resolve_base_model

    path = tmp_path / "model.safetensors"
    to_single_file(tiny_model_dir("sd2"), path)
    base = resolve_base_model(str(path))
    assert (base.kind, base.family) == ("file", "sd2")
    pipe = load_base_pipeline(base)
    assert type(pipe).__name__ == "StableDiffusionPipeline" and base.prediction_type == "v_prediction"
    for name, module in (("unet", pipe.unet), ("vae", pipe.vae)):
        ref = getattr(__import__("diffusers"), type(module).__name__).from_pretrained(tiny_model_dir("sd2") / name)
        assert all(torch.equal(v, ref.state_dict()[k]) for k, v in module.state_dict().items())
