"""Aspect-ratio buckets on the flow-matching families (Flux.1, SD3) in real tiny runs.

The transformer's inputs are recorded with a forward pre-hook: every batch has one shape, Flux's packed token count
and positional image ids are those of that batch's latent grid (so they change from bucket to bucket within one run),
SD3 sees the bucket's unpacked latents, and class images are cropped to their instance batch's bucket. Bucket sides
that are not multiples of 16 (VAE 8 x patch 2) are refused before any weights load; a killed and resumed Flux run
with buckets ends bit-identical to an uninterrupted one.
"""

from __future__ import annotations

import pytest
import test_dreambooth_buckets_training as bucket_tests
import torch

_train_recording = bucket_tests._train_recording
shaped_dir = bucket_tests.shaped_dir  # the same portrait/landscape/square photos (a session fixture)

N = 2


@pytest.fixture
def bucket_kwargs(flow_kwargs, shaped_dir):
    """A tiny flow run at 48 px over portrait/landscape/square photos: buckets 64x32, 48x48 and 32x64."""

    def make(name: str = "flux-dev", **overrides):
        kwargs = dict(instance_data_dir=str(shaped_dir), resolution=48, train_batch_size=2, max_train_steps=3)
        return flow_kwargs(name, **{**bucket_tests.SHAPED_BUCKETS, **kwargs, **overrides})

    return make


def _hooked_trainer_class():
    """A trainer that records the transformer's inputs of every forward call (``trainer.calls``)."""
    from hfvision.training import DreamBoothTrainer

    class Hooked(DreamBoothTrainer):
        def configure_models(self):
            super().configure_models()
            self.calls = []

            def hook(module, args, kwargs):
                self.calls.append({k: kwargs.get(k) for k in ("hidden_states", "img_ids")})

            self.components["transformer"].register_forward_pre_hook(hook, with_kwargs=True)

    return Hooked


@pytest.mark.parametrize("name", ["flux-dev", "sd3"])
def test_flow_buckets_one_shape_per_batch_and_per_batch_image_ids(name, bucket_kwargs):
    from hfvision.training.dreambooth.flow_matching import latent_image_ids

    trainer, result = _train_recording(bucket_kwargs(name), trainer_class=_hooked_trainer_class())
    calls = trainer.calls
    assert result.global_step == 3 and len(trainer.seen) == 3 == len(calls)
    assert torch.isfinite(torch.tensor(result.final_loss))
    from hfvision.models.registry import RESOLUTION_FACTORS

    # the family's bucket factor is the VAE's downsampling times the transformer's patch (Flux packs 2x2 latents)
    vae_scale = 2 ** (len(trainer.vae.config.block_out_channels) - 1)
    patch = 2 if name == "flux-dev" else trainer.components["transformer"].config.patch_size
    assert vae_scale * patch == RESOLUTION_FACTORS["flux" if name == "flux-dev" else "sd3"] == 16
    dataset, n_inst = trainer.dataset, len(trainer.dataset.instance)
    assert sorted(dataset.buckets) == [(32, 64), (48, 48), (64, 32)]
    shapes = []
    for batch, call in zip(trainer.seen, calls):
        n, (height, width) = batch["num_instance"], batch["shape"][-2:]
        shapes.append((height, width))
        assert batch["shape"][0] == 2 * n  # instance half + class half, one tensor of one shape
        for image_id in batch["image_ids"][:n]:
            assert dataset.buckets[dataset.bucket_of[image_id]] == (height, width)
        assert all(i >= n_inst for i in batch["image_ids"][n:])  # the second half really is class images
        h, w = height // vae_scale, width // vae_scale
        tokens = call["hidden_states"]
        if name == "flux-dev":  # packed 2x2 patches: one token per patch, ids (0, row, column) of this grid
            assert tokens.shape[:2] == (2 * n, (h // 2) * (w // 2))
            expected = latent_image_ids(h, w, dtype=call["img_ids"].dtype)
            assert torch.equal(call["img_ids"], expected)
            rows, columns = call["img_ids"][:, 1], call["img_ids"][:, 2]
            assert (rows.max().item() + 1, columns.max().item() + 1) == (h // 2, w // 2)
        else:  # SD3: unpacked latents of the bucket
            assert tokens.shape == (2 * n, 16, h, w)
    assert len(set(shapes)) >= 2  # the loss step ran on different buckets in one run


@pytest.mark.parametrize("name", ["flux-dev", "sd3"])
def test_flow_bucket_sides_must_be_multiples_of_16_before_loading(name, bucket_kwargs, tmp_path):
    """A list entry or a computed grid on 8 px would give odd latent sizes: refused with the fix, nothing written."""
    from hfvision.training import DreamBoothConfig, DreamBoothTrainer

    out = tmp_path / "refused"
    with pytest.raises(ValueError, match=r"'40,48'.* multiples of 16 for .*VAE 8 x patch 2.*try '32,48'"):
        DreamBoothTrainer(
            DreamBoothConfig(**bucket_kwargs(name, aspect_ratio_buckets="48,48;40,48", output_dir=str(out)))
        ).train()
    with pytest.raises(ValueError, match=r"--bucket_reso_steps=8: .* multiples of 16 .*; try 16 or 64"):
        DreamBoothTrainer(
            DreamBoothConfig(**bucket_kwargs(name, bucket_reso_steps=8, min_bucket_reso=32, output_dir=str(out)))
        ).train()
    assert not out.exists()


@pytest.mark.slow
def test_flux_bucket_resume_is_bit_identical(bucket_kwargs, assert_resume_matches_straight_run):
    """Flux with buckets, LoRA, flips and caption dropout: straight 2N steps vs SIGKILL after step N+1 and resume from
    checkpoint N: same losses at every step and bit-identical LoRA weights."""
    kwargs = bucket_kwargs(
        max_train_steps=2 * N,
        checkpointing_steps=N,
        train_batch_size=1,
        random_flip=True,
        caption_dropout=0.5,
        use_lora=True,
        rank=4,
    )
    assert_resume_matches_straight_run(kwargs, N)
