"""Shared helpers for the DreamBooth pipeline tests (imported by basename: pytest puts this folder on sys.path)."""

from __future__ import annotations

import contextlib
import logging

import torch

from hfvision.testing import tiny_controlnet


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def active_controlnet(family, seed=0):
    """A tiny ControlNet whose zero-initialised output convolutions are randomised, so it changes the result."""
    controlnet = tiny_controlnet(family, seed)
    torch.manual_seed(seed + 100)
    with torch.no_grad():
        for module in [*controlnet.controlnet_down_blocks, controlnet.controlnet_mid_block]:
            for param in module.parameters():
                param.normal_(std=0.2)
    return controlnet


def control_photo():
    from PIL import Image

    from hfvision.pipelines.controlnet_utils import canny_image
    from hfvision.testing import sample_image

    return canny_image(sample_image("astronaut").resize((64, 64), Image.BICUBIC))


@contextlib.contextmanager
def diffusers_warnings():
    """Records of warnings logged under diffusers' logger tree (which does not propagate to the root logger)."""
    records = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = records.append
    logger = logging.getLogger("diffusers")
    logger.addHandler(handler)
    try:
        yield records
    finally:
        logger.removeHandler(handler)
