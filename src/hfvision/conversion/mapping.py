"""Pure functions that apply the :mod:`~hfvision.conversion.keys` tables to state dicts."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from .keys import LAYOUTS, KeyMap, component_key_map


def rename_keys(keys: Iterable[str], pairs: Iterable[tuple[str, str]]) -> tuple[dict[str, str], list[str]]:
    """Rename diffusers ``keys`` with ``(original_prefix, diffusers_prefix)`` pairs (longest prefix wins).

    Returns ``({diffusers_key: original_key}, unmapped_keys)``; prefixes match whole dotted components.

    >>> rename_keys(["conv_in.weight"], [("input_blocks.0.0", "conv_in")])
    ({'conv_in.weight': 'input_blocks.0.0.weight'}, [])
    """
    table = {d: o for o, d in pairs}
    renamed, unmapped = {}, []
    for key in keys:
        parts = key.split(".")
        for n in range(len(parts), 0, -1):
            prefix = ".".join(parts[:n])
            if prefix in table:
                renamed[key] = ".".join([table[prefix], *parts[n:]])
                break
        else:
            unmapped.append(key)
    return renamed, unmapped


def normalize_clip_keys(state_dict: Mapping) -> dict:
    """Give a CLIP text model's state dict the ``text_model.`` prefix it had before transformers 5.

    transformers 5 flattened ``CLIPTextModel`` (its keys start at ``embeddings.``/``encoder.``) while
    ``CLIPTextModelWithProjection`` keeps ``text_model.``; files saved by older versions also carry the
    non-persistent ``position_ids`` buffer, which is dropped.
    """
    out = {}
    for key, value in state_dict.items():
        if key.endswith("embeddings.position_ids"):
            continue
        if not (key.startswith("text_model.") or key == "text_projection.weight"):
            key = f"text_model.{key}"
        out[key] = value
    return out


def apply_key_map(state_dict: Mapping, key_map: KeyMap, prefix: str = "", what: str = "component") -> dict:
    """Convert one diffusers component's ``state_dict`` to original keys under ``prefix``.

    Raises ``ValueError`` naming the keys no pair covers, so a layout the tables do not know is never
    written half-converted.
    """
    import torch

    fused_parts = {}
    for base, qkv in key_map.fused:
        for position, diffusers_prefix in enumerate(qkv):
            fused_parts[diffusers_prefix] = (base, position)
    fused: dict[str, list] = {}
    plain = {}
    for key, value in state_dict.items():
        head, _, leaf = key.rpartition(".")
        if head in fused_parts and leaf in ("weight", "bias"):
            base, position = fused_parts[head]
            fused.setdefault(f"{base}_{leaf}", [None, None, None])[position] = value
        else:
            plain[key] = value

    renamed, unmapped = rename_keys(plain, key_map.pairs)
    if unmapped:
        shown = ", ".join(sorted(unmapped)[:5])
        raise ValueError(f"{what}: {len(unmapped)} weight(s) have no original-layout name (e.g. {shown})")
    out = {}
    for key, original in renamed.items():
        value = plain[key]
        head = original.rpartition(".")[0]
        if head in key_map.conv1x1 and original.endswith(".weight") and value.ndim == 2:
            value = value[:, :, None, None]
        elif original in key_map.transposed:
            value = value.T
        out[prefix + original] = value.contiguous()
    for original, parts in fused.items():
        if any(p is None for p in parts):
            raise ValueError(f"{what}: {original} needs q, k and v projections; some are missing")
        out[prefix + original] = torch.cat(parts, dim=0).contiguous()
    return out


def pipeline_to_original(family: str, state_dicts: Mapping[str, Mapping], configs: Mapping[str, Mapping]) -> dict:
    """Convert diffusers component state dicts (``unet``, ``vae``, ``text_encoder``[, ``text_encoder_2``])
    of ``family`` into one original-layout state dict.

    Args:
        family (`str`): ``"sd1"``, ``"sd2"`` or ``"sdxl"``.
        state_dicts (`Mapping[str, Mapping]`): component name -> diffusers/transformers state dict.
        configs (`Mapping[str, Mapping]`): component name -> its ``config.json`` content.
    """
    if family not in LAYOUTS:
        raise ValueError(f"family={family!r} is not one of {tuple(LAYOUTS)}")
    out = {}
    for name, (prefix, kind) in LAYOUTS[family].items():
        if name not in state_dicts:
            raise ValueError(f"the {family} layout needs a {name!r} component; the pipeline has none")
        state_dict = state_dicts[name]
        if kind in ("clip", "open_clip"):
            state_dict = normalize_clip_keys(state_dict)
        converted = apply_key_map(state_dict, component_key_map(kind, configs[name]), prefix, what=name)
        clash = out.keys() & converted.keys()
        if clash:
            raise ValueError(f"{name}: keys collide with another component: {sorted(clash)[:3]}")
        out.update(converted)
    return out
