"""DreamBooth on the flow-matching families (Flux.1 dev/schnell, SD3) through the same trainer as SD.

Runs use the tiny seeded Flux/SD3 pipelines of `hfvision.testing` at 32 px (4x4 latents), batches of one instance and
one class image, 2 steps. The LoRA outputs are checked with stock diffusers calls (``FluxPipeline.from_pretrained``
+ ``load_lora_weights``) against the in-memory trained model, image for image.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hfvision.training import DreamBoothConfig, DreamBoothTrainer

N = 2


def _render(pipe, seed: int = 0) -> np.ndarray:
    generator = torch.Generator("cpu").manual_seed(seed)
    out = pipe(
        "a photo of sks person", height=32, width=32, num_inference_steps=2, generator=generator, output_type="np"
    )
    return out.images[0]


@pytest.mark.parametrize("name", ["flux-dev", "sd3"])
def test_lora_output_loads_in_stock_pipeline_and_matches(name, flow_kwargs, train_in_process, flow_model_dir):
    """Transformer LoRA with prior preservation: the file loads into the stock pipeline of the base and renders the
    same image as the trained in-memory model; the LoRA changed the model."""
    from diffusers import DiffusionPipeline
    from safetensors.torch import load_file

    trainer, result = train_in_process(flow_kwargs(name, use_lora=True, rank=4))
    assert result.global_step == N and np.isfinite(result.final_loss)
    keys = load_file(result.lora_weights).keys()
    assert keys and all(k.startswith("transformer.") and "lora" in k for k in keys)

    trained = trainer.build_pipeline()
    expected = _render(trained)
    stock = DiffusionPipeline.from_pretrained(flow_model_dir(name))
    assert type(stock).__name__ == ("FluxPipeline" if name.startswith("flux") else "StableDiffusion3Pipeline")
    before = _render(stock)
    stock.load_lora_weights(result.output_dir)
    after = _render(stock)
    np.testing.assert_allclose(after, expected, atol=1e-6)
    assert np.abs(after - before).max() > 1e-4  # the trained adapter does something


def test_flux_lora_text_encoder_and_layers(flow_kwargs, train_in_process):
    """``--train_text_encoder`` adapts the CLIP encoder only (T5 stays frozen); ``--lora_layers`` picks modules;
    ``--cache_latents`` without ``--center_crop`` caches one crop of the non-square photo (as diffusers' script)."""
    from safetensors.torch import load_file

    kwargs = flow_kwargs(
        "flux-dev",
        use_lora=True,
        rank=2,
        train_text_encoder=True,
        lora_layers="attn.to_k",
        prior=False,
        cache_latents=True,
    )
    trainer, result = train_in_process(kwargs)
    keys = list(load_file(result.lora_weights))
    assert {k.split(".")[0] for k in keys} == {"transformer", "text_encoder"}
    assert all(".to_k." in k for k in keys if k.startswith("transformer."))
    assert not any(p.requires_grad for p in trainer.text_encoders[1].parameters())  # T5
    assert trainer.dataset.has_random_crops() and trainer.dataset.latent_params is not None


def test_flow_defaults_follow_diffusers_scripts(flow_kwargs, monkeypatch):
    """Per-family defaults filled at the input check, without loading weights."""
    import hfvision.training.dreambooth.preparation as preparation_module

    monkeypatch.setattr(preparation_module, "load_base_pipeline", lambda *a, **k: pytest.fail("weights loaded"))
    cases = [
        (("flux-dev", True), ("none", 3.5, 512)),
        (("flux-dev", False), ("none", 3.5, 77)),
        (("flux-schnell", True), ("none", None, 256)),  # capped at schnell's T5 limit
        (("sd3", True), ("logit_normal", None, 77)),
    ]
    for (name, lora), expected in cases:
        config = DreamBoothConfig(**flow_kwargs(name, use_lora=lora))
        DreamBoothTrainer(config).check_inputs()
        assert (config.weighting_scheme, config.guidance_scale, config.max_sequence_length) == expected, name


@pytest.mark.parametrize(
    "name, overrides, message",
    [
        ("flux-dev", {"resolution": 40}, "--resolution=40: .* multiple of 16"),
        ("flux-dev", {"snr_gamma": 5.0}, "--snr_gamma=5.0 applies to Stable Diffusion"),
        ("sd3", {"noise_offset": 0.1}, "--offset_noise=0.1 applies to Stable Diffusion"),
        ("flux-schnell", {"guidance_scale": 3.5}, "has no guidance embedding"),
        ("flux-schnell", {"max_sequence_length": 512}, "over .* T5 limit of 256"),
        ("flux-dev", {"precondition_outputs": True}, "--precondition_outputs applies to SD3 only"),
        ("sd3", {"use_lora": True, "lora_blocks": "x"}, "lora_blocks='x' must be comma-separated"),
        ("sd3", {"weighting_scheme": "uniform"}, "weighting_scheme='uniform' is not one of"),
        (
            "sd3",
            {"use_lora": True, "output_kohya_format": True},
            "--output_kohya_format is not available for SD3 LoRAs",
        ),
        ("flux-dev", {"use_lora": True, "use_dora": True, "output_kohya_format": True}, "kohya-Flux has no DoRA"),
    ],
)
def test_bad_flow_options_fail_before_loading(name, overrides, message, flow_kwargs, monkeypatch):
    import hfvision.training.dreambooth.preparation as preparation_module

    monkeypatch.setattr(preparation_module, "load_base_pipeline", lambda *a, **k: pytest.fail("weights loaded"))
    with pytest.raises(ValueError, match=message):
        DreamBoothTrainer(DreamBoothConfig(**flow_kwargs(name, **overrides))).train()


def test_sd_base_refuses_flow_options(tiny_kwargs, monkeypatch):
    import hfvision.training.dreambooth.preparation as preparation_module

    monkeypatch.setattr(preparation_module, "load_base_pipeline", lambda *a, **k: pytest.fail("weights loaded"))
    with pytest.raises(ValueError, match="--guidance_scale=3.5 applies to Flux/SD3 only"):
        DreamBoothTrainer(DreamBoothConfig(**tiny_kwargs(guidance_scale=3.5))).train()


def test_weighting_schemes_listed_once():
    from hfvision.training.dreambooth.config import FLOW_WEIGHTING_SCHEMES
    from hfvision.training.dreambooth.flow_matching import WEIGHTING_SCHEMES

    assert FLOW_WEIGHTING_SCHEMES == WEIGHTING_SCHEMES


def test_family_from_registry_and_folder(flow_model_dir):
    from hfvision.training.dreambooth.components import resolve_base_model

    assert resolve_base_model("flux-schnell", resolution=1024).family == "flux"
    assert resolve_base_model("sd35-medium", resolution=1024).family == "sd3"
    assert resolve_base_model(str(flow_model_dir("sd3"))).family == "sd3"


def _straight_killed_resumed(run_training, kwargs, tmp_path):
    import signal

    straight = {**kwargs, "output_dir": str(tmp_path / "straight")}
    killed = {**kwargs, "output_dir": str(tmp_path / "killed")}
    _, straight_logs, _ = run_training(straight)
    returncode, _, _ = run_training(killed, kill_at=N + 1)
    assert returncode == -signal.SIGKILL
    _, resumed_logs, _ = run_training({**killed, "resume_from_checkpoint": "latest"})
    assert [r["step"] for r in resumed_logs if "step" in r] == list(range(N + 1, 2 * N + 1))
    losses = {r["step"]: r["loss"] for r in straight_logs if "step" in r}
    for r in resumed_logs:
        if "step" in r:
            assert r["loss"] == losses[r["step"]]


@pytest.mark.slow  # three fresh processes: ~2 min on the shared test machine
def test_flux_lora_sigkill_and_resume_is_bit_identical(
    flow_kwargs, run_training, tmp_path, load_weights, assert_bit_identical
):
    """Flux-dev LoRA with prior preservation and CLIP LoRA: killed after step N+1, resumed from checkpoint N, ends
    bit-identical to the uninterrupted run (fresh processes)."""
    kwargs = flow_kwargs(
        "flux-dev",
        use_lora=True,
        rank=4,
        train_text_encoder=True,
        max_train_steps=2 * N,
        checkpointing_steps=N,
        weighting_scheme="logit_normal",
    )
    _straight_killed_resumed(run_training, kwargs, tmp_path)
    assert_bit_identical(load_weights(tmp_path / "straight"), load_weights(tmp_path / "killed"))


@pytest.mark.slow  # ~80 s
def test_sd3_full_sigkill_and_resume_is_bit_identical(
    flow_kwargs, run_training, tmp_path, load_weights, assert_bit_identical
):
    """SD3 full fine-tune (transformer + both CLIP encoders), cached latents, mode weighting, preconditioned outputs."""
    kwargs = flow_kwargs(
        "sd3",
        max_train_steps=2 * N,
        checkpointing_steps=N,
        train_text_encoder=True,
        weighting_scheme="mode",
        precondition_outputs=True,
        cache_latents=True,
        center_crop=True,
    )
    _straight_killed_resumed(run_training, kwargs, tmp_path)
    assert_bit_identical(load_weights(tmp_path / "straight"), load_weights(tmp_path / "killed"))


@pytest.mark.parametrize("name", ["flux-schnell", "sd3"])
def test_full_finetune_saves_stock_pipeline(name, flow_kwargs, train_in_process, flow_model_dir):
    """Full fine-tune: ``DiffusionPipeline.from_pretrained(out)`` is the stock class with the trained transformer;
    the frozen parts are the base's, byte for byte; DreamBooth pipelines know the token."""
    from diffusers import DiffusionPipeline

    from hfvision.pipelines.dreambooth_flux import DreamBoothFluxPipeline
    from hfvision.pipelines.dreambooth_sd3 import DreamBoothSD3Pipeline

    trainer, result = train_in_process(
        flow_kwargs(name, cache_latents=True, center_crop=True, pre_compute_text_embeddings=True)
    )
    loaded = DiffusionPipeline.from_pretrained(result.output_dir)
    base = DiffusionPipeline.from_pretrained(flow_model_dir(name))
    assert type(loaded) is type(base)
    trained = trainer.accelerator.unwrap_model(trainer.prepared_denoiser).state_dict()
    assert all(torch.equal(v, trained[k]) for k, v in loaded.transformer.state_dict().items())
    changed = [k for k, v in base.transformer.state_dict().items() if not torch.equal(v, trained[k])]
    assert changed
    for part in ("vae", "text_encoder", "text_encoder_2"):
        for k, v in getattr(base, part).state_dict().items():
            assert torch.equal(v, getattr(loaded, part).state_dict()[k]), (part, k)
    cls = DreamBoothSD3Pipeline if name == "sd3" else DreamBoothFluxPipeline
    assert cls.from_pretrained(result.output_dir).instance_token == "sks"


def test_cached_embeddings_match_uncached(flow_kwargs, train_in_process, tmp_path):
    """Text-embedding caching (and cached latents) changes the compute, not the result."""
    _, plain = train_in_process(flow_kwargs("sd3", use_lora=True, center_crop=True, output_dir=str(tmp_path / "a")))
    _, cached = train_in_process(
        flow_kwargs(
            "sd3",
            use_lora=True,
            center_crop=True,
            output_dir=str(tmp_path / "b"),
            cache_latents=True,
            pre_compute_text_embeddings=True,
        )
    )
    assert cached.final_loss == pytest.approx(plain.final_loss, rel=1e-5)
