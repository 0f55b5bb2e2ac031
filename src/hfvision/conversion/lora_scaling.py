"""PEFT LoRA scaling facts shared by the SD and Flux kohya converters: a module's alpha / rank and the LoraConfig
fields that reproduce per-module ranks and alphas."""

from __future__ import annotations

import collections
import math
from collections.abc import Mapping

MAGNITUDE = ".lora_magnitude_vector"  # PEFT's DoRA magnitude parameter


def module_scaling(config: Mapping | None, module: str, rank: int) -> float:
    """alpha / rank (or alpha / sqrt(rank) with rsLoRA) of ``module`` under a PEFT LoraConfig dict; 1.0 when no
    config is known (diffusers' convention for files without alphas)."""
    if not config:
        return 1.0
    from peft.utils.other import get_pattern_key

    alpha = config.get("lora_alpha", rank)
    alpha_pattern = config.get("alpha_pattern") or {}
    if alpha_pattern:
        key = get_pattern_key(list(alpha_pattern), module)
        alpha = alpha_pattern.get(key, alpha)
    return alpha / math.sqrt(rank) if config.get("use_rslora") else alpha / rank


def lora_config_fields(ranks: dict[str, int], alphas: dict[str, float], peft: Mapping) -> dict:
    """PEFT LoraConfig fields reproducing per-module ranks and alphas: the most common value, exceptions as
    patterns (full module names)."""
    r = collections.Counter(ranks.values()).most_common(1)[0][0]
    alpha = collections.Counter(alphas.values()).most_common(1)[0][0]
    alpha = int(alpha) if float(alpha).is_integer() else alpha
    return {
        "r": r,
        "lora_alpha": alpha,
        "rank_pattern": {m: v for m, v in ranks.items() if v != r},
        "alpha_pattern": {m: v for m, v in alphas.items() if v != alpha},
        "target_modules": sorted(ranks),
        "use_dora": any(k.endswith(MAGNITUDE) for k in peft),
    }
