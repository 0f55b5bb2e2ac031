"""Helpers shared by the conversion tests."""

from __future__ import annotations

import contextlib

import torch


def realign(pipe):
    """Give every weight a fresh allocation.

    CPU matmul kernels can round differently for a weight that sits at an unaligned address (safetensors
    mmaps tensors at arbitrary file offsets) than for the same values freshly allocated, so two pipelines
    with bit-identical weights are compared for identical images only after both are realigned.
    """
    for module in pipe.components.values():
        if isinstance(module, torch.nn.Module):
            for tensor in [*module.parameters(), *module.buffers()]:
                tensor.data = tensor.data.clone()
    return pipe


def generate(pipe, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    return pipe(
        "a photo of sks dog", num_inference_steps=2, height=64, width=64, output_type="np", generator=generator
    ).images


@contextlib.contextmanager
def single_thread():
    """Tiny models run as fast on one thread; two OpenMP threads on a shared 2-core machine can be 10x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
