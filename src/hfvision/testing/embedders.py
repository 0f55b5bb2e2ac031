"""Tiny, seeded image/text embedders for the quality metrics: a CLIP (vision + text towers) and a DINO-like ViT.

They have the architectures of ``openai/clip-vit-base-patch32`` and ``facebook/dino-vits16`` (and load through the
same ``AutoModel`` / ``AutoProcessor`` calls) at hidden size 32, so metric code runs offline in milliseconds.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from ..utils.clip_vocab import clip_tokenizer
from .classifiers import save_pretrained_pair
from .diffusion import tiny_text_config


def tiny_clip_embedder(image_size: int = 32, patch_size: int = 8, seed: int = 0):
    """A seeded ``CLIPModel`` (2-layer towers, hidden 32, projection 32) and its ``CLIPProcessor``.

    The tokenizer is the real CLIP BPE (built offline), so prompts tokenize as they would for the real model.

    >>> model, processor = tiny_clip_embedder()
    >>> model.config.projection_dim
    32
    """
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor

    text = tiny_text_config()  # the tiny pipelines' CLIP text tower
    vision = dict(
        hidden_size=32,
        intermediate_size=37,
        num_hidden_layers=2,
        num_attention_heads=4,
        image_size=image_size,
        patch_size=patch_size,
    )
    config = CLIPConfig(text_config=text.to_dict(), vision_config=vision, projection_dim=32)
    torch.manual_seed(seed)
    model = CLIPModel(config).eval()
    image_processor = CLIPImageProcessor(
        size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size}
    )
    return model, CLIPProcessor(image_processor=image_processor, tokenizer=clip_tokenizer())


def tiny_dino_embedder(image_size: int = 32, patch_size: int = 8, seed: int = 0):
    """A seeded ``ViTModel`` shaped like DINO's ViT-S/16 (CLS token, no pooler) and its ``ViTImageProcessor``.

    >>> model, processor = tiny_dino_embedder()
    >>> model.config.hidden_size
    32
    """
    from transformers import ViTConfig, ViTImageProcessor, ViTModel

    config = ViTConfig(
        image_size=image_size,
        patch_size=patch_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=37,
        qkv_bias=True,
    )
    torch.manual_seed(seed)
    model = ViTModel(config, add_pooling_layer=False).eval()
    processor = ViTImageProcessor(
        size={"height": image_size, "width": image_size},
        image_mean=[0.485, 0.456, 0.406],
        image_std=[0.229, 0.224, 0.225],
    )
    return model, processor


def save_tiny_clip_embedder(out_dir: str | os.PathLike, **kwargs) -> Path:
    """Save :func:`tiny_clip_embedder` (safetensors + processor) so ``AutoModel``/``AutoProcessor`` load it."""
    return save_pretrained_pair(out_dir, *tiny_clip_embedder(**kwargs))


def save_tiny_dino_embedder(out_dir: str | os.PathLike, **kwargs) -> Path:
    """Save :func:`tiny_dino_embedder` (safetensors + image processor) so ``AutoModel`` loads it."""
    return save_pretrained_pair(out_dir, *tiny_dino_embedder(**kwargs))
