"""SDXL specifics: two text encoders (penultimate hidden states concatenated, pooled output of the second) and the
size/crop conditioning (``add_time_ids``). Matches ``StableDiffusionXLPipeline.encode_prompt`` without clip skip.
"""

from __future__ import annotations

import torch


def encode_prompt_sdxl(text_encoders, input_ids: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """``(prompt_embeds, pooled_prompt_embeds)`` for token ids of the two tokenizers."""
    hidden, pooled = [], None
    for encoder, ids in zip(text_encoders, input_ids):
        out = encoder(ids, output_hidden_states=True)
        pooled = out[0]  # the last encoder is CLIPTextModelWithProjection: text_embeds
        hidden.append(out.hidden_states[-2])
    return torch.cat(hidden, dim=-1), pooled


def add_time_ids(
    original_sizes: torch.Tensor, crop_top_left: torch.Tensor, resolution: int | torch.Tensor
) -> torch.Tensor:
    """SDXL micro-conditioning per sample: ``(orig_h, orig_w, crop_top, crop_left, target_h, target_w)``.

    ``resolution`` is the square training size, or a ``(batch, 2)`` tensor of per-sample (height, width) targets
    (aspect-ratio buckets: the batch's ``target_sizes``).
    """
    if isinstance(resolution, torch.Tensor):
        target = resolution.to(original_sizes.device)
    else:
        target = torch.tensor([resolution, resolution], device=original_sizes.device).expand(len(original_sizes), 2)
    return torch.cat([original_sizes, crop_top_left, target], dim=1).float()


def validate_time_embedding(unet) -> None:
    """Fail early if the UNet does not take SDXL's text_time conditioning."""
    if getattr(unet.config, "addition_embed_type", None) != "text_time":
        raise ValueError("an SDXL base must have a UNet with addition_embed_type='text_time'")
