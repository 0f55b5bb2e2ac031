"""Key tables between diffusers and the original Stable Diffusion single-file layout, as data.

Everything here is pure Python (no torch): a :class:`KeyMap` is a list of ``(original_prefix,
diffusers_prefix)`` pairs plus the few tensors that change shape on the way (1x1-conv attention in
the VAE, OpenCLIP's fused ``in_proj`` and transposed ``text_projection``). The UNet and VAE maps are
*generated from the model config* (number of levels, layers per block, which levels have attention),
so any UNet2DConditionModel built from the standard blocks converts, not only SD 1.x shapes.

Original layout facts used (CompVis ``ldm`` / Stability ``sgm`` code bases):

- UNet ``model.diffusion_model.``: ``time_embed.{0,2}``, ``input_blocks.0.0`` (conv_in), then per level
  ``layers_per_block`` entries ``input_blocks.N.{0: ResBlock, 1: SpatialTransformer}`` and one
  ``input_blocks.N.0.op`` downsampler (not after the last level); ``middle_block.{0,1,2}``;
  ``output_blocks.N`` with ``layers_per_block + 1`` entries per level, the upsampler being the last
  module of the level's last entry; ``out.{0,2}``; SDXL's ``label_emb.0.{0,2}``.
- VAE ``first_stage_model.``: ``encoder.down.N.block.M``, ``encoder.down.N.downsample.conv``,
  ``{encoder,decoder}.mid.{block_1,attn_1,block_2}`` (attention q/k/v/proj_out stored as 1x1 convs),
  ``decoder.up.N`` numbered from the *lowest* resolution, ``norm_out``, ``nin_shortcut``.
- Text: SD 1.x ``cond_stage_model.transformer.text_model.*`` (Hugging Face CLIP names); SD 2.x
  ``cond_stage_model.model.*`` and SDXL's second encoder ``conditioner.embedders.1.model.*`` use
  OpenCLIP names (``transformer.resblocks.N.attn.in_proj_weight`` = q, k, v stacked).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from ..models.families import UNET_FAMILIES

# The original single-file layout exists for the UNet families (hfvision.models.families); LAYOUTS and
# FAMILY_SENTINELS below have one entry each.
FAMILIES = UNET_FAMILIES

# ResBlock sub-module names: (original, diffusers).
UNET_RESNET_NAMES = (
    ("in_layers.0", "norm1"),
    ("in_layers.2", "conv1"),
    ("emb_layers.1", "time_emb_proj"),
    ("out_layers.0", "norm2"),
    ("out_layers.3", "conv2"),
    ("skip_connection", "conv_shortcut"),
)
UNET_FIXED = (
    ("time_embed.0", "time_embedding.linear_1"),
    ("time_embed.2", "time_embedding.linear_2"),
    ("input_blocks.0.0", "conv_in"),
    ("out.0", "conv_norm_out"),
    ("out.2", "conv_out"),
)
# SDXL size/pooled-text conditioning (addition_embed_type="text_time") or a class embedding.
UNET_LABEL_EMB = (("label_emb.0.0", "linear_1"), ("label_emb.0.2", "linear_2"))

# VAE ResBlocks keep their names in diffusers, except the shortcut.
VAE_RESNET_NAMES = (*((n, n) for n in ("norm1", "conv1", "norm2", "conv2")), ("nin_shortcut", "conv_shortcut"))
VAE_ATTENTION_NAMES = (
    ("norm", "group_norm"),
    ("q", "to_q"),
    ("k", "to_k"),
    ("v", "to_v"),
    ("proj_out", "to_out.0"),
)
VAE_FIXED_PER_CODER = (("conv_in", "conv_in"), ("conv_out", "conv_out"), ("norm_out", "conv_norm_out"))
VAE_FIXED = (("quant_conv", "quant_conv"), ("post_quant_conv", "post_quant_conv"))

OPEN_CLIP_FIXED = (
    ("token_embedding", "text_model.embeddings.token_embedding"),
    ("positional_embedding", "text_model.embeddings.position_embedding.weight"),
    ("ln_final", "text_model.final_layer_norm"),
    ("text_projection", "text_projection.weight"),
)
OPEN_CLIP_LAYER_NAMES = (
    ("ln_1", "layer_norm1"),
    ("ln_2", "layer_norm2"),
    ("attn.out_proj", "self_attn.out_proj"),
    ("mlp.c_fc", "mlp.fc1"),
    ("mlp.c_proj", "mlp.fc2"),
)

# Where each diffusers component lives in the single file, and which text-encoder layout it uses.
LAYOUTS: dict[str, dict[str, tuple[str, str]]] = {
    "sd1": {
        "unet": ("model.diffusion_model.", "unet"),
        "vae": ("first_stage_model.", "vae"),
        "text_encoder": ("cond_stage_model.", "clip"),
    },
    "sd2": {
        "unet": ("model.diffusion_model.", "unet"),
        "vae": ("first_stage_model.", "vae"),
        "text_encoder": ("cond_stage_model.model.", "open_clip"),
    },
    "sdxl": {
        "unet": ("model.diffusion_model.", "unet"),
        "vae": ("first_stage_model.", "vae"),
        "text_encoder": ("conditioner.embedders.0.", "clip"),
        "text_encoder_2": ("conditioner.embedders.1.model.", "open_clip"),
    },
}

# Sentinel keys of the supported families (all must be present) ...
FAMILY_SENTINELS = {
    "sdxl": (
        "model.diffusion_model.label_emb.0.0.weight",
        "conditioner.embedders.0.transformer.text_model.embeddings.token_embedding.weight",
        "conditioner.embedders.1.model.token_embedding.weight",
    ),
    "sd2": ("model.diffusion_model.input_blocks.0.0.weight", "cond_stage_model.model.token_embedding.weight"),
    "sd1": (
        "model.diffusion_model.input_blocks.0.0.weight",
        "cond_stage_model.transformer.text_model.embeddings.token_embedding.weight",
    ),
}
# ... and key fragments that identify families/files we do not convert: (fragment, description).
UNSUPPORTED_MARKERS = (
    ("double_blocks.", "a Flux transformer"),
    ("joint_blocks.", "a Stable Diffusion 3 MMDiT"),
    ("text_encoders.clip_g.", "a Stable Diffusion 3 text-encoder set"),
    ("conditioner.embedders.0.model.", "an SDXL refiner (OpenCLIP-only conditioner)"),
    ("lora_", "a LoRA adapter"),
    ("control_model.", "a ControlNet"),
    ("down_blocks.0.resnets.0.conv1.weight", "a diffusers-format component (not a single file)"),
)


@dataclass(frozen=True)
class KeyMap:
    """How one diffusers component's state dict maps to the original layout.

    Attributes:
        pairs (`tuple[tuple[str, str], ...]`): ``(original_prefix, diffusers_prefix)``; a diffusers key
            is renamed by its longest matching prefix (whole dotted components, or the full key).
        conv1x1 (`frozenset[str]`): original prefixes whose ``.weight`` is a 1x1 conv there and a
            linear layer in diffusers (``[out, in]`` <-> ``[out, in, 1, 1]``).
        transposed (`frozenset[str]`): original keys stored transposed (OpenCLIP ``text_projection``).
        fused (`tuple[tuple[str, tuple[str, str, str]], ...]`): ``(original_base, (q, k, v))`` where the
            original ``{base}_weight``/``{base}_bias`` stack the three diffusers projections.
    """

    pairs: tuple[tuple[str, str], ...]
    conv1x1: frozenset[str] = field(default_factory=frozenset)
    transposed: frozenset[str] = field(default_factory=frozenset)
    fused: tuple[tuple[str, tuple[str, str, str]], ...] = ()


def _per_level(value, levels: int, name: str) -> list[int]:
    if isinstance(value, int):
        return [value] * levels
    if len(value) != levels:
        raise ValueError(f"{name}={list(value)} must have one entry per level ({levels})")
    return [int(v) for v in value]


def _has_attention(block_type: str, supported: Sequence[str], plain: Sequence[str]) -> bool:
    if block_type in supported:
        return True
    if block_type in plain:
        return False
    raise ValueError(
        f"block type {block_type!r} has no original-layout equivalent; supported: {sorted({*supported, *plain})}"
    )


def unet_key_pairs(config: Mapping) -> list[tuple[str, str]]:
    """``(original_prefix, diffusers_prefix)`` pairs for a ``UNet2DConditionModel`` config.

    The numbering of ``input_blocks``/``output_blocks`` follows from the number of levels,
    ``layers_per_block`` and which levels carry cross-attention, read from ``config``.

    >>> pairs = unet_key_pairs({"down_block_types": ["CrossAttnDownBlock2D", "DownBlock2D"],
    ...                         "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D"], "layers_per_block": 1})
    >>> ("input_blocks.2.0.op", "down_blocks.0.downsamplers.0.conv") in pairs
    True
    """
    down, up = list(config["down_block_types"]), list(config["up_block_types"])
    if len(down) != len(up):
        raise ValueError(f"down_block_types ({len(down)}) and up_block_types ({len(up)}) differ in length")
    levels = len(down)
    layers = _per_level(config.get("layers_per_block", 2), levels, "layers_per_block")
    pairs = list(UNET_FIXED)

    def resnet(original: str, diffusers: str) -> None:
        pairs.extend((f"{original}.{o}", f"{diffusers}.{d}") for o, d in UNET_RESNET_NAMES)

    index = 1
    for level, block_type in enumerate(down):
        attention = _has_attention(block_type, ["CrossAttnDownBlock2D"], ["DownBlock2D"])
        for j in range(layers[level]):
            resnet(f"input_blocks.{index}.0", f"down_blocks.{level}.resnets.{j}")
            if attention:
                pairs.append((f"input_blocks.{index}.1", f"down_blocks.{level}.attentions.{j}"))
            index += 1
        if level < levels - 1:
            pairs.append((f"input_blocks.{index}.0.op", f"down_blocks.{level}.downsamplers.0.conv"))
            index += 1

    mid_type = config.get("mid_block_type", "UNetMidBlock2DCrossAttn")
    if mid_type != "UNetMidBlock2DCrossAttn":
        raise ValueError(f"mid_block_type={mid_type!r} has no original-layout equivalent (UNetMidBlock2DCrossAttn)")
    resnet("middle_block.0", "mid_block.resnets.0")
    pairs.append(("middle_block.1", "mid_block.attentions.0"))
    resnet("middle_block.2", "mid_block.resnets.1")

    index = 0
    for level, (block_type, n) in enumerate(zip(up, reversed(layers))):
        attention = _has_attention(block_type, ["CrossAttnUpBlock2D"], ["UpBlock2D"])
        for j in range(n + 1):
            resnet(f"output_blocks.{index}.0", f"up_blocks.{level}.resnets.{j}")
            if attention:
                pairs.append((f"output_blocks.{index}.1", f"up_blocks.{level}.attentions.{j}"))
            if j == n and level < levels - 1:
                slot = 2 if attention else 1
                pairs.append((f"output_blocks.{index}.{slot}.conv", f"up_blocks.{level}.upsamplers.0.conv"))
            index += 1

    if config.get("addition_embed_type") == "text_time":
        pairs.extend((o, f"add_embedding.{d}") for o, d in UNET_LABEL_EMB)
    elif config.get("addition_embed_type") is not None:
        raise ValueError(f"addition_embed_type={config['addition_embed_type']!r} is not supported (text_time)")
    if config.get("class_embed_type") in ("timestep", "projection"):
        pairs.extend((o, f"class_embedding.{d}") for o, d in UNET_LABEL_EMB)
    elif config.get("num_class_embeds") is not None:
        pairs.append(("label_emb", "class_embedding"))
    return pairs


def vae_key_pairs(config: Mapping) -> KeyMap:
    """The :class:`KeyMap` for an ``AutoencoderKL`` config (levels and layers per block from ``config``)."""
    down, up = list(config["down_block_types"]), list(config["up_block_types"])
    levels = len(down)
    if len(up) != levels:
        raise ValueError(f"VAE down ({levels}) and up ({len(up)}) block counts differ")
    for block_type in (*down, *up):
        if block_type not in ("DownEncoderBlock2D", "UpDecoderBlock2D"):
            raise ValueError(f"VAE block type {block_type!r} has no original-layout equivalent")
    if not config.get("mid_block_add_attention", True):
        raise ValueError("VAEs without mid-block attention have no original-layout equivalent")
    layers = int(config.get("layers_per_block", 1))
    pairs = list(VAE_FIXED)
    conv1x1 = set()

    def resnet(original: str, diffusers: str) -> None:
        pairs.extend((f"{original}.{o}", f"{diffusers}.{d}") for o, d in VAE_RESNET_NAMES)

    for coder in ("encoder", "decoder"):
        pairs.extend((f"{coder}.{o}", f"{coder}.{d}") for o, d in VAE_FIXED_PER_CODER)
        resnet(f"{coder}.mid.block_1", f"{coder}.mid_block.resnets.0")
        resnet(f"{coder}.mid.block_2", f"{coder}.mid_block.resnets.1")
        for o, d in VAE_ATTENTION_NAMES:
            pairs.append((f"{coder}.mid.attn_1.{o}", f"{coder}.mid_block.attentions.0.{d}"))
            if o != "norm":
                conv1x1.add(f"{coder}.mid.attn_1.{o}")
    for level in range(levels):
        for j in range(layers):
            resnet(f"encoder.down.{level}.block.{j}", f"encoder.down_blocks.{level}.resnets.{j}")
        if level < levels - 1:
            pairs.append((f"encoder.down.{level}.downsample.conv", f"encoder.down_blocks.{level}.downsamplers.0.conv"))
    for level in range(levels):
        original = levels - 1 - level  # the decoder's up.N counts from the lowest resolution
        for j in range(layers + 1):
            resnet(f"decoder.up.{original}.block.{j}", f"decoder.up_blocks.{level}.resnets.{j}")
        if level < levels - 1:
            pairs.append((f"decoder.up.{original}.upsample.conv", f"decoder.up_blocks.{level}.upsamplers.0.conv"))
    return KeyMap(tuple(pairs), conv1x1=frozenset(conv1x1))


def clip_key_pairs() -> KeyMap:
    """Hugging Face CLIP text model under ``transformer.`` (SD 1.x, SDXL's first encoder)."""
    return KeyMap((("transformer.text_model", "text_model"),))


def open_clip_key_pairs(num_layers: int) -> KeyMap:
    """OpenCLIP text tower names for a CLIP text model with ``num_layers`` layers (SD 2.x, SDXL's second)."""
    pairs = list(OPEN_CLIP_FIXED)
    fused = []
    for n in range(num_layers):
        original, diffusers = f"transformer.resblocks.{n}", f"text_model.encoder.layers.{n}"
        pairs.extend((f"{original}.{o}", f"{diffusers}.{d}") for o, d in OPEN_CLIP_LAYER_NAMES)
        qkv = tuple(f"{diffusers}.self_attn.{p}_proj" for p in "qkv")
        fused.append((f"{original}.attn.in_proj", qkv))
    return KeyMap(tuple(pairs), transposed=frozenset({"text_projection"}), fused=tuple(fused))


def component_key_map(kind: str, config: Mapping) -> KeyMap:
    """The :class:`KeyMap` of a component ``kind`` (``"unet"``, ``"vae"``, ``"clip"``, ``"open_clip"``)."""
    if kind == "unet":
        return KeyMap(tuple(unet_key_pairs(config)))
    if kind == "vae":
        return vae_key_pairs(config)
    if kind == "clip":
        return clip_key_pairs()
    if kind == "open_clip":
        return open_clip_key_pairs(int(config["num_hidden_layers"]))
    raise ValueError(f"unknown component kind {kind!r}")
