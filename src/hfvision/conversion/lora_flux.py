"""Flux.1 LoRA files: diffusers/PEFT layout <-> the kohya layout (what ComfyUI, Forge and kohya's sd-scripts load).

diffusers names the transformer's modules (``transformer.transformer_blocks.0.attn.to_q.lora_A.weight``); the kohya
layout names the original Black Forest Labs modules with underscores (``lora_unet_double_blocks_0_img_attn_qkv``),
where the query, key and value projections are one fused linear (and a single block fuses them with its MLP input,
``linear1``). A diffusers LoRA on ``to_q``/``to_k``/``to_v`` is written as one LoRA on the fused module whose rank is
the sum of the parts: the down weights stacked, the up weight block-diagonal. Readers (diffusers'
``FluxPipeline.load_lora_weights`` among them) recognise that block structure and split it back exactly; members the
LoRA does not adapt (e.g. a single block's ``proj_mlp`` under diffusers' default targets) are zero blocks, which add
nothing.

``.alpha`` is the fused module's alpha: alpha / fused rank is the scale of the diffusers LoRA (members with another
scale have it folded into their up block). Files written here also carry the PEFT adapter configs in the header,
so they convert back to the identical diffusers file.

Known reader limit: diffusers' kohya-Flux reader splits a single block's ``linear1`` at Flux.1's real widths
(3072 / 12288), so it reads single-block LoRAs of the real model only, and it drops LoRAs on the top-level modules
(embedders, final layer), which ComfyUI reads.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from ..utils.logging import get_logger

logger = get_logger(__name__)

PREFIX = "transformer."
_QKV = ("attn.to_q", "attn.to_k", "attn.to_v")
_ADD_QKV = ("attn.add_q_proj", "attn.add_k_proj", "attn.add_v_proj")
# diffusers module (relative to a block) -> kohya module suffix, one to one
_DOUBLE = {
    "attn.to_out.0": "img_attn_proj",
    "attn.to_add_out": "txt_attn_proj",
    "ff.net.0.proj": "img_mlp_0",
    "ff.net.2": "img_mlp_2",
    "ff_context.net.0.proj": "txt_mlp_0",
    "ff_context.net.2": "txt_mlp_2",
    "norm1.linear": "img_mod_lin",
    "norm1_context.linear": "txt_mod_lin",
}
_DOUBLE_FUSED = {"img_attn_qkv": _QKV, "txt_attn_qkv": _ADD_QKV}
_SINGLE = {"proj_out": "linear2", "norm.linear": "modulation_lin"}
_SINGLE_FUSED = {"linear1": (*_QKV, "proj_mlp")}
_TOP = {
    "x_embedder": "img_in",
    "context_embedder": "txt_in",
    "time_text_embed.timestep_embedder.linear_1": "time_in_in_layer",
    "time_text_embed.timestep_embedder.linear_2": "time_in_out_layer",
    "time_text_embed.guidance_embedder.linear_1": "guidance_in_in_layer",
    "time_text_embed.guidance_embedder.linear_2": "guidance_in_out_layer",
    "time_text_embed.text_embedder.linear_1": "vector_in_in_layer",
    "time_text_embed.text_embedder.linear_2": "vector_in_out_layer",
    "proj_out": "final_layer_linear",
    "norm_out.linear": "final_layer_adaLN_modulation_1",  # (scale, shift) in diffusers, (shift, scale) in BFL's
}
_SWAPPED = "norm_out.linear"
_BLOCK = re.compile(r"^(transformer_blocks|single_transformer_blocks)\.(\d+)\.(.+)$")


def is_flux_state_dict(state_dict: Mapping) -> bool:
    """Whether a LoRA state dict is a Flux LoRA: diffusers layout (``transformer.*``) or kohya-Flux layout
    (``lora_unet_double_blocks_*``/``lora_unet_single_blocks_*``)."""
    return any(
        k.startswith(PREFIX) or k.startswith(("lora_unet_double_blocks_", "lora_unet_single_blocks_"))
        for k in state_dict
    )


def check_flux_family(path, family: str | None, state_dict: Mapping) -> None:
    """Refuse a transformer LoRA that is not (or cannot be told to be) Flux.1's before writing Flux names: SD3's
    transformer shares Flux's double-block module names but has no kohya-Flux spelling."""
    if family is not None and not family.startswith("flux"):
        raise ValueError(f"{path} is a {family} transformer LoRA; only Flux.1 LoRAs have a kohya layout here")
    if family is None and not any(".single_transformer_blocks." in key for key in state_dict):
        raise ValueError(
            f"{path}: cannot tell a Flux.1 from an SD3 transformer LoRA (no single-block weights); "
            "pass --family flux-dev or flux-schnell if it is Flux.1"
        )


def _groups() -> list[tuple[str, str, tuple[str, ...]]]:
    """(block kind, kohya suffix, diffusers members) for every kohya module; one member = one to one."""
    rows = [("double", suffix, (module,)) for module, suffix in _DOUBLE.items()]
    rows += [("double", suffix, members) for suffix, members in _DOUBLE_FUSED.items()]
    rows += [("single", suffix, (module,)) for module, suffix in _SINGLE.items()]
    rows += [("single", suffix, members) for suffix, members in _SINGLE_FUSED.items()]
    return rows


def _kohya_name(kind: str, index: int, suffix: str) -> str:
    return f"lora_unet_{kind}_blocks_{index}_{suffix}"


def _diffusers_block(kind: str, index: int) -> str:
    return f"{'transformer_blocks' if kind == 'double' else 'single_transformer_blocks'}.{index}"


def _swap_halves(weight):
    import torch

    first, second = weight.chunk(2, dim=0)
    return torch.cat([second, first], dim=0)


def _member_out_features(members: tuple[str, ...], member: str, in_features: int) -> int:
    # attention projections keep the width; a single block's MLP input is 4x wider (mlp_ratio of FluxTransformer2D)
    return 4 * in_features if member == "proj_mlp" else in_features


def flux_to_kohya(state_dict: Mapping, config: Mapping | None = None) -> dict:
    """Rename a diffusers Flux transformer LoRA (``transformer.<module>.lora_A/B.weight``) to the kohya-Flux layout.

    Args:
        state_dict (`Mapping`): the transformer's LoRA weights, PEFT names under ``transformer.``.
        config (`Mapping`, *optional*): the transformer's PEFT LoraConfig fields (``r``, ``lora_alpha``,
            ``alpha_pattern``, ``use_rslora``); scale 1 per module when `None`.

    Returns:
        `dict[str, torch.Tensor]`: ``<kohya module>.lora_down.weight``, ``.lora_up.weight`` and ``.alpha``.
    """
    import torch

    from .lora_scaling import module_scaling

    weights = {}
    for key, value in state_dict.items():
        if not key.startswith(PREFIX) or not key.endswith((".lora_A.weight", ".lora_B.weight")):
            raise ValueError(
                f"Flux LoRA key {key!r} is not a transformer LoRA down/up weight "
                "(DoRA and text-encoder LoRAs have no kohya-Flux spelling here)"
            )
        module, _, part = key[len(PREFIX) :].rpartition(".lora_")
        weights.setdefault(module, {})[part[0]] = value
    out, done = {}, set()

    def scaling(module: str, rank: int) -> float:
        return module_scaling(config, module, rank) if config else 1.0

    blocks = {(m.group(1), int(m.group(2))) for m in map(_BLOCK.match, weights) if m}
    for block, index in sorted(blocks):
        kind = "double" if block == "transformer_blocks" else "single"
        for group_kind, suffix, members in _groups():
            if group_kind != kind:
                continue
            names = [f"{_diffusers_block(kind, index)}.{member}" for member in members]
            present = [name for name in names if name in weights]
            if not present:
                continue
            done.update(present)
            ranks = {weights[name]["A"].shape[0] for name in present}
            if len(ranks) > 1:
                raise ValueError(
                    f"{', '.join(present)} have different LoRA ranks {sorted(ranks)}; the kohya-Flux "
                    "layout fuses them into one module, which needs one rank"
                )
            rank = ranks.pop()
            first = weights[present[0]]
            scale = scaling(present[0], rank)
            kohya = _kohya_name(kind, index, suffix)
            if len(members) == 1:
                out[f"{kohya}.lora_down.weight"] = first["A"].contiguous()
                out[f"{kohya}.lora_up.weight"] = first["B"].contiguous()
                out[f"{kohya}.alpha"] = torch.tensor(float(scale * rank))
                continue
            in_features = first["A"].shape[1]
            downs, ups = [], []
            for member, name in zip(members, names):
                if name in weights:
                    down, up = weights[name]["A"], weights[name]["B"]
                    ratio = scaling(name, rank) / scale
                    ups.append(up if ratio == 1 else up * ratio)
                    downs.append(down)
                else:
                    out_features = _member_out_features(members, member, in_features)
                    downs.append(first["A"].new_zeros(rank, in_features))
                    ups.append(first["B"].new_zeros(out_features, rank))
            out[f"{kohya}.lora_down.weight"] = torch.cat(downs).contiguous()
            out[f"{kohya}.lora_up.weight"] = torch.block_diag(*ups).contiguous()
            out[f"{kohya}.alpha"] = torch.tensor(float(scale * rank * len(members)))
    for module, kohya_suffix in _TOP.items():
        if module in weights:
            done.add(module)
            rank = weights[module]["A"].shape[0]
            up = weights[module]["B"]
            out[f"lora_unet_{kohya_suffix}.lora_down.weight"] = weights[module]["A"].contiguous()
            out[f"lora_unet_{kohya_suffix}.lora_up.weight"] = (
                _swap_halves(up) if module == _SWAPPED else up
            ).contiguous()
            out[f"lora_unet_{kohya_suffix}.alpha"] = torch.tensor(float(scaling(module, rank) * rank))
    left = sorted(set(weights) - done)
    if left:
        raise ValueError(f"Flux LoRA module {left[0]!r} has no kohya-Flux name ({len(left)} such modules)")
    return out


def kohya_to_flux(state_dict: Mapping, config: Mapping | None = None) -> tuple[dict, dict]:
    """The inverse of [`flux_to_kohya`]: a kohya-Flux LoRA whose fused modules are block-diagonal (as written by
    hfvision, ai-toolkit and diffusers' own converter) back to diffusers' ``transformer.*`` PEFT names.

    Args:
        state_dict (`Mapping`): ``lora_unet_*`` keys of a Flux LoRA.
        config (`Mapping`, *optional*): the transformer's PEFT LoraConfig fields stored with the file; when given,
            per-module scales folded into the up blocks are undone and the config is returned as is.

    Returns:
        `tuple[dict, dict]`: the diffusers state dict and the transformer's LoraConfig fields.
    """
    import torch

    from .lora_scaling import lora_config_fields, module_scaling

    names = {k.split(".")[0] for k in state_dict}
    lookup = {}
    for kohya in names:
        match = re.match(r"^lora_unet_(double|single)_blocks_(\d+)_(.+)$", kohya)
        if match:
            kind, index, suffix = match.group(1), int(match.group(2)), match.group(3)
            row = next((members for k, s, members in _groups() if k == kind and s == suffix), None)
            if row is not None:
                lookup[kohya] = [f"{_diffusers_block(kind, index)}.{member}" for member in row]
                continue
        else:
            top = {v: k for k, v in _TOP.items()}.get(kohya.removeprefix("lora_unet_"))
            if top is not None:
                lookup[kohya] = [top]
                continue
        raise ValueError(f"kohya LoRA module {kohya!r} is not a Flux.1 module this converter knows")
    result, ranks, alphas = {}, {}, {}
    for kohya, members in sorted(lookup.items()):
        down, up = state_dict[f"{kohya}.lora_down.weight"], state_dict[f"{kohya}.lora_up.weight"]
        fused_rank = down.shape[0]
        alpha = state_dict.get(f"{kohya}.alpha")
        scale = (fused_rank if alpha is None else float(alpha.item())) / fused_rank
        if len(members) == 1:
            module = members[0]
            result[f"{PREFIX}{module}.lora_A.weight"] = down
            result[f"{PREFIX}{module}.lora_B.weight"] = _swap_halves(up) if module == _SWAPPED else up
            ranks[module], alphas[module] = fused_rank, scale * fused_rank
            continue
        if fused_rank % len(members):
            raise ValueError(
                f"{kohya} has rank {fused_rank}, not a multiple of its {len(members)} fused parts; "
                "only block-diagonal fused LoRAs split exactly"
            )
        rank = fused_rank // len(members)
        in_features = down.shape[1]
        widths = [_member_out_features(tuple(members), m.rsplit(".", 1)[-1], in_features) for m in members]
        if sum(widths) != up.shape[0]:
            widths = [up.shape[0] // len(members)] * len(members)
        starts = [sum(widths[:i]) for i in range(len(widths))]
        blocks = list(zip(starts, widths))
        mask = torch.zeros(up.shape, dtype=torch.bool)
        for i, (start, width) in enumerate(blocks):
            mask[start : start + width, i * rank : (i + 1) * rank] = True
        if torch.any(up[~mask] != 0):
            raise ValueError(
                f"{kohya} is a fused LoRA whose up weight is not block-diagonal; convert it with "
                "diffusers' FluxPipeline.lora_state_dict, which merges it approximately"
            )
        for i, (module, (start, width)) in enumerate(zip(members, blocks)):
            member_down = down[i * rank : (i + 1) * rank]
            member_up = up[start : start + width, i * rank : (i + 1) * rank]
            if not member_down.any() and not member_up.any():
                continue  # a zero block: the member was not adapted
            if config:
                ratio = module_scaling(config, module, rank) / scale
                member_up = member_up if ratio == 1 else member_up / ratio
            result[f"{PREFIX}{module}.lora_A.weight"] = member_down.contiguous()
            result[f"{PREFIX}{module}.lora_B.weight"] = member_up.contiguous()
            ranks[module], alphas[module] = rank, scale * rank
    if config:
        return result, dict(config)
    return result, lora_config_fields(ranks, alphas, result)
