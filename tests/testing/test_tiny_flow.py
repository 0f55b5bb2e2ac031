"""The tiny Flux / SD3 kit: the offline T5 tokenizer, the real models' structural traits, seeding, and save -> stock
`FluxPipeline` / `StableDiffusion3Pipeline.from_pretrained` round trips.

Weights loaded from safetensors sit at addresses that are not 64-byte aligned, and CPU matmul kernels then round
differently (~1e-6 here) than for the freshly built model; once the loaded weights are copied to fresh (aligned)
memory the images are bit-identical, which is what the round-trip test checks, besides a 1e-5 bound on the raw load.
"""

from __future__ import annotations

import string

import numpy as np
import pytest
import torch

KW = dict(height=64, width=64, num_inference_steps=2, output_type="np", max_sequence_length=32)
CASES = [("flux", "dev"), ("flux", "schnell"), ("sd3", "sd3"), ("sd3", "sd3.5")]


def _pipe(kind: str, variant: str, seed: int = 0):
    from hfvision.testing import tiny_flux_pipeline, tiny_sd3_pipeline

    pipe = (tiny_flux_pipeline if kind == "flux" else tiny_sd3_pipeline)(variant, seed)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _images(pipe, prompt="a photo of a dog", seed=0):
    return pipe(prompt, generator=torch.Generator().manual_seed(seed), **KW).images


def _realign(pipe):
    """Copy every weight of ``pipe`` to freshly allocated memory (see the module docstring)."""
    for module in pipe.components.values():
        if isinstance(module, torch.nn.Module):
            for param in module.parameters():
                param.data = param.data.clone()
    return pipe


def test_t5_tokenizer_layout_and_words():
    from hfvision.testing import t5_tokenizer

    tok = t5_tokenizer()
    assert (tok.pad_token_id, tok.eos_token_id, tok.unk_token_id) == (0, 1, 2)
    assert len(tok) == 2000 and tok.model_max_length == 512
    pieces = tok.convert_ids_to_tokens(tok("a photo of a dog on the beach").input_ids)
    assert pieces == ["▁a", "▁photo", "▁of", "▁a", "▁dog", "▁on", "▁the", "▁beach", "</s>"]
    # every printable ASCII character has a piece: no <unk> for ASCII text, and decoding gives the text back
    text = "sks " + string.ascii_letters + " " + string.digits + " " + string.punctuation
    ids = tok(text).input_ids
    assert tok.unk_token_id not in ids
    assert tok.decode(ids, skip_special_tokens=True) == text
    padded = tok("a dog", padding="max_length", max_length=8).input_ids
    assert padded == [tok.convert_tokens_to_ids("▁a"), tok.convert_tokens_to_ids("▁dog"), 1, 0, 0, 0, 0, 0]


def test_t5_tokenizer_saves_and_loads_with_autotokenizer(tmp_path):
    from transformers import AutoTokenizer, T5Tokenizer

    from hfvision.testing import t5_tokenizer
    from hfvision.utils.t5_vocab import t5_vocab

    tok = t5_tokenizer(vocab_size=500, model_max_length=256)
    tok.save_pretrained(tmp_path)
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    assert isinstance(loaded, T5Tokenizer) and len(loaded) == 500 and loaded.model_max_length == 256
    prompts = ["a photo of sks dog", "Flux.1 [dev], 1024x1024!"]
    assert loaded(prompts).input_ids == tok(prompts).input_ids
    assert t5_vocab(500) == t5_vocab.__wrapped__(500)  # deterministic: a rebuild gives the same pieces and scores
    with pytest.raises(ValueError, match="vocab_size=50 is too small"):
        t5_vocab(50)


@pytest.mark.parametrize("kind,variant", CASES)
def test_tiny_flow_pipelines_keep_the_real_models_traits(kind, variant):
    pipe = _pipe(kind, variant)
    vae, transformer = pipe.vae.config, pipe.transformer.config
    assert vae.latent_channels == 16 and pipe.vae_scale_factor == 8
    assert not vae.use_quant_conv and not vae.use_post_quant_conv
    if kind == "flux":
        assert (vae.scaling_factor, vae.shift_factor) == (0.3611, 0.1159)
        assert transformer.in_channels == 16 * 4 and transformer.patch_size == 1  # 2x2-packed latents
        assert sum(transformer.axes_dims_rope) == transformer.attention_head_dim
        assert transformer.joint_attention_dim == pipe.text_encoder_2.config.d_model
        assert transformer.pooled_projection_dim == pipe.text_encoder.config.hidden_size
        assert transformer.guidance_embeds is (variant == "dev")
        assert pipe.scheduler.config.use_dynamic_shifting is (variant == "dev")
        assert pipe.tokenizer_2.model_max_length == (512 if variant == "dev" else 256)
    else:
        assert (vae.scaling_factor, vae.shift_factor) == (1.5305, 0.0609)
        assert transformer.in_channels == transformer.out_channels == 16 and transformer.patch_size == 2
        clip_width = pipe.text_encoder.config.hidden_size + pipe.text_encoder_2.config.hidden_size
        assert transformer.joint_attention_dim == pipe.text_encoder_3.config.d_model == clip_width
        clip_pooled = pipe.text_encoder.config.projection_dim + pipe.text_encoder_2.config.projection_dim
        assert transformer.pooled_projection_dim == clip_pooled
        assert transformer.caption_projection_dim == transformer.num_attention_heads * transformer.attention_head_dim
        assert (transformer.qk_norm == "rms_norm") is (variant == "sd3.5")
        assert pipe.scheduler.config.shift == 3.0
    assert sum(p.numel() for p in pipe.transformer.parameters()) < 500_000


@pytest.mark.parametrize("kind,variant", [CASES[0], CASES[2]])
def test_tiny_flow_pipelines_are_seeded(kind, variant):
    a, b, c = _pipe(kind, variant), _pipe(kind, variant), _pipe(kind, variant, seed=1)
    t5 = "text_encoder_2" if kind == "flux" else "text_encoder_3"

    def same(x, y):
        return all(torch.equal(u, v) for u, v in zip(x.state_dict().values(), y.state_dict().values()))

    assert same(a.transformer, b.transformer) and same(getattr(a, t5), getattr(b, t5))
    assert not same(a.transformer, c.transformer)
    first, again = _images(a), _images(b)
    assert first.shape == (1, 64, 64, 3) and first.std() > 0.01
    np.testing.assert_array_equal(first, again)
    assert np.abs(first - _images(a, "a photo of a cat")).max() > 1e-3  # the prompt reaches the image


@pytest.mark.parametrize("kind,variant", [CASES[0], CASES[3]])
def test_saved_tiny_flow_pipelines_load_with_stock_from_pretrained(kind, variant, tmp_path):
    from diffusers import FluxPipeline, StableDiffusion3Pipeline

    from hfvision.testing import save_tiny_flux, save_tiny_sd3

    stock = FluxPipeline if kind == "flux" else StableDiffusion3Pipeline
    (save_tiny_flux if kind == "flux" else save_tiny_sd3)(tmp_path, variant)
    loaded = stock.from_pretrained(tmp_path)
    loaded.set_progress_bar_config(disable=True)
    memory = _pipe(kind, variant)
    for name, module in memory.components.items():
        if isinstance(module, torch.nn.Module):
            got, want = getattr(loaded, name).state_dict(), module.state_dict()
            assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in want), name
    tokenizer = "tokenizer_2" if kind == "flux" else "tokenizer_3"
    assert type(getattr(loaded, tokenizer)) is type(getattr(memory, tokenizer))
    assert (
        getattr(loaded, tokenizer)("a photo of sks").input_ids
        == getattr(memory, tokenizer)("a photo of sks").input_ids
    )
    expected, raw = _images(memory), _images(loaded)
    assert np.abs(expected - raw).max() <= 1e-5
    np.testing.assert_array_equal(_images(_realign(loaded)), expected)
