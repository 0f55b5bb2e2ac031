"""Key tables: generated from configs, checked against diffusers' original->diffusers converters."""

from __future__ import annotations

import pytest
import torch

from hfvision.conversion import bundled_configs, detect_family, pipeline_to_original, unet_key_pairs
from hfvision.conversion.configs import BASES
from hfvision.conversion.keys import LAYOUTS, KeyMap, vae_key_pairs
from hfvision.conversion.mapping import apply_key_map, normalize_clip_keys, rename_keys

# Published parameter counts of the public models whose configs hfvision bundles.
PARAMS = {
    "sd15": {"unet": 859_520_964, "vae": 83_653_863, "text_encoder": 123_060_480},
    "sd21": {"unet": 865_910_724, "vae": 83_653_863, "text_encoder": 340_387_840},
    "sdxl": {"unet": 2_567_463_684, "vae": 83_653_863, "text_encoder": 123_060_480, "text_encoder_2": 694_659_840},
}
DIFFUSERS_MODEL_TYPE = {"sd15": "v1", "sd21": "v2", "sdxl": "xl_base"}


def _meta_components(configs: dict) -> dict:
    from accelerate import init_empty_weights
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    with init_empty_weights():
        models = {
            "unet": UNet2DConditionModel.from_config(configs["unet"]),
            "vae": AutoencoderKL.from_config(configs["vae"]),
            "text_encoder": CLIPTextModel(CLIPTextConfig(**configs["text_encoder"])),
        }
        if "text_encoder_2" in configs:
            models["text_encoder_2"] = CLIPTextModelWithProjection(CLIPTextConfig(**configs["text_encoder_2"]))
    return models


def _assert_same_layout(converted: dict, expected: dict) -> None:
    assert converted.keys() == expected.keys(), sorted(converted.keys() ^ expected.keys())[:5]
    for key, value in expected.items():
        assert tuple(converted[key].shape) == tuple(value.shape), key


@pytest.mark.parametrize("base", ["sd15", "sd21", "sdxl"])
def test_bundled_real_configs_convert_like_diffusers(base):
    """Real-size SD 1.5 / 2.1 / SDXL components (on the meta device, no memory): the bundled configs give the
    published parameter counts, our original-layout keys are recognised by diffusers' family detection, and
    diffusers' converters map them back to exactly the diffusers keys and shapes."""
    from diffusers.loaders import single_file_utils as sfu

    configs = bundled_configs(base)
    family = BASES[base].family
    models = _meta_components(configs)
    for name, count in PARAMS[base].items():
        assert sum(p.numel() for p in models[name].parameters()) == count, name

    state_dicts = {name: model.state_dict() for name, model in models.items()}
    checkpoint = pipeline_to_original(family, state_dicts, configs)
    assert sfu.infer_diffusers_model_type(checkpoint) == DIFFUSERS_MODEL_TYPE[base]
    assert detect_family(checkpoint) == (family, None)
    if base == "sd15":
        assert sfu.CHECKPOINT_KEY_NAMES["v1"] in checkpoint and sfu.is_clip_model(checkpoint)
    if base == "sd21":
        assert sfu.is_open_clip_model(checkpoint)
    if base == "sdxl":
        assert sfu.is_clip_sdxl_model(checkpoint) and sfu.is_open_clip_sdxl_model(checkpoint)

    _assert_same_layout(sfu.convert_ldm_unet_checkpoint(checkpoint, configs["unet"]), state_dicts["unet"])
    _assert_same_layout(sfu.convert_ldm_vae_checkpoint(checkpoint, configs["vae"]), state_dicts["vae"])
    for name in [n for n in ("text_encoder", "text_encoder_2") if n in models]:
        prefix, kind = LAYOUTS[family][name]
        if kind == "clip":
            converted = sfu.convert_ldm_clip_checkpoint(checkpoint)
        else:
            converted = sfu.convert_open_clip_checkpoint(models[name], checkpoint, prefix=prefix)
        _assert_same_layout(normalize_clip_keys(converted), normalize_clip_keys(state_dicts[name]))


def test_unet_mapping_is_derived_from_config():
    """A 3-level UNet with 2 layers per block, attention only in the two lower levels and a 2-deep transformer
    (no public model has this shape): our keys, converted back by diffusers, give the same tensors."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from diffusers.loaders import single_file_utils as sfu

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        block_out_channels=(32, 32, 64),
        layers_per_block=2,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        transformer_layers_per_block=(1, 1, 2),
        cross_attention_dim=16,
        attention_head_dim=4,
        norm_num_groups=8,
        sample_size=16,
    )
    state = unet.state_dict()
    converted = apply_key_map(state, KeyMap(tuple(unet_key_pairs(unet.config))), "model.diffusion_model.")
    # 1 conv_in + 3 levels x 2 layers + 2 downsamplers = 9 input blocks; 3 x (2 + 1) = 9 output blocks
    inputs = {k.split(".")[3] for k in converted if ".input_blocks." in k}
    outputs = {k.split(".")[3] for k in converted if ".output_blocks." in k}
    assert inputs == {str(i) for i in range(9)} and outputs == {str(i) for i in range(9)}
    assert "model.diffusion_model.input_blocks.4.1.transformer_blocks.0.attn2.to_k.weight" in converted
    assert "model.diffusion_model.input_blocks.7.1.transformer_blocks.1.attn1.to_q.weight" in converted
    assert "model.diffusion_model.output_blocks.5.2.conv.weight" in converted  # upsampler after attention
    assert "model.diffusion_model.output_blocks.8.1.conv.weight" not in converted  # last level: no upsampler
    back = sfu.convert_ldm_unet_checkpoint(converted, dict(unet.config))
    assert back.keys() == state.keys()
    assert all(torch.equal(back[k], v) for k, v in state.items())

    vae = AutoencoderKL(
        block_out_channels=(16, 16, 32),
        layers_per_block=2,
        down_block_types=("DownEncoderBlock2D",) * 3,
        up_block_types=("UpDecoderBlock2D",) * 3,
        norm_num_groups=8,
        latent_channels=4,
    )
    vae_state = vae.state_dict()
    converted = apply_key_map(vae_state, vae_key_pairs(vae.config), "first_stage_model.")
    assert "first_stage_model.decoder.up.0.block.2.conv1.weight" in converted  # decoder counts from the bottom
    back = sfu.convert_ldm_vae_checkpoint(converted, dict(vae.config))
    assert back.keys() == vae_state.keys()
    assert all(torch.equal(back[k], v) for k, v in vae_state.items())


def test_unknown_weights_are_an_error_not_dropped():
    pairs = unet_key_pairs(
        {"down_block_types": ["DownBlock2D"], "up_block_types": ["UpBlock2D"], "layers_per_block": 1}
    )
    renamed, unmapped = rename_keys(["conv_in.weight", "my_adapter.lora_A.weight"], pairs)
    assert renamed == {"conv_in.weight": "input_blocks.0.0.weight"} and unmapped == ["my_adapter.lora_A.weight"]
    with pytest.raises(ValueError, match="no original-layout name.*my_adapter"):
        apply_key_map({"my_adapter.lora_A.weight": torch.zeros(1)}, KeyMap(tuple(pairs)), what="unet")
    with pytest.raises(ValueError, match="SimpleCrossAttnDownBlock2D"):
        unet_key_pairs({"down_block_types": ["SimpleCrossAttnDownBlock2D"], "up_block_types": ["UpBlock2D"]})


def test_transformers5_flat_clip_keys_get_the_text_model_prefix():
    flat = {"embeddings.token_embedding.weight": 1, "embeddings.position_ids": 2, "final_layer_norm.bias": 3}
    assert normalize_clip_keys(flat) == {
        "text_model.embeddings.token_embedding.weight": 1,
        "text_model.final_layer_norm.bias": 3,
    }
    nested = {"text_model.encoder.layers.0.mlp.fc1.weight": 1, "text_projection.weight": 2}
    assert normalize_clip_keys(nested) == nested


@pytest.mark.parametrize(
    "base, scheduler, prediction, pads",
    [
        ("sd21-base", "DDIMScheduler", "epsilon", {"tokenizer": "!"}),
        ("sdxl", "EulerDiscreteScheduler", "epsilon", {"tokenizer": "<|endoftext|>", "tokenizer_2": "!"}),
    ],
)
def test_bundled_config_dir_loads_offline(base, scheduler, prediction, pads, tmp_path):
    """The directory handed to diffusers' from_single_file: pipeline index, scheduler and CLIP tokenizers."""
    import diffusers
    from transformers import CLIPTokenizer

    from hfvision.conversion.configs import write_config_dir

    out = write_config_dir(bundled_configs(base), BASES[base].family, tmp_path / "config")
    pipeline_class = getattr(diffusers, "StableDiffusionXLPipeline" if base == "sdxl" else "StableDiffusionPipeline")
    assert pipeline_class.load_config(out)["_class_name"] == pipeline_class.__name__
    sched = getattr(diffusers, scheduler).from_pretrained(out, subfolder="scheduler")
    assert sched.config.prediction_type == prediction
    for name, pad in pads.items():
        tokenizer = CLIPTokenizer.from_pretrained(out / name)
        assert tokenizer.pad_token == pad and tokenizer("a photo of").input_ids == [49406, 320, 1125, 539, 49407]
