"""``batch_size="auto"``: the largest batch that fits a memory budget, and halving on out-of-memory errors.

The per-image memory of a forward pass is measured on a small trial batch: with the device allocator's peak
statistics on CUDA/XPU/MPS, and on CPU (Linux) by resetting and reading the process's peak resident memory. Where
neither is available the activations are estimated from the largest module output. At run time an out-of-memory
error on a batch splits it in halves (down to one image) and the smaller size is kept for later batches.

Copied with the custom pipeline code by ``save_pretrained``: imports only the standard library and torch.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import torch
from transformers.utils import logging

logger = logging.get_logger(__name__)

_OOM_MESSAGES = ("out of memory", "can't allocate memory", "cannot allocate memory", "failed to allocate")


def is_oom_error(err: BaseException) -> bool:
    """Whether ``err`` is an allocator out-of-memory error (any device)."""
    if isinstance(err, (MemoryError, getattr(torch, "OutOfMemoryError", MemoryError))):
        return True
    return isinstance(err, RuntimeError) and any(m in str(err).lower() for m in _OOM_MESSAGES)


def run_with_oom_backoff(fn: Callable[[torch.Tensor], torch.Tensor], batch: torch.Tensor, state: dict) -> torch.Tensor:
    """``fn(batch)`` in chunks of at most ``state["chunk"]`` rows; on OOM halve the chunk and retry that chunk.

    ``state`` persists across calls so a batch size that ran out of memory once is not tried again.
    Results are concatenated along dim 0; a single image that does not fit re-raises the error.
    """
    n = batch.shape[0]
    chunk = min(state.get("chunk") or n, n) or 1
    outputs, start = [], 0
    while start < n:
        try:
            outputs.append(fn(batch[start : start + chunk]))
        except Exception as err:
            if not is_oom_error(err) or chunk == 1:
                raise
            _empty_cache(batch.device)
            chunk = max(1, chunk // 2)
            state["chunk"] = chunk
            logger.warning("out of memory on a batch; retrying with batches of %d images", chunk)
            continue
        start += chunk
    return outputs[0] if len(outputs) == 1 else torch.cat(outputs)


def _empty_cache(device: torch.device) -> None:
    backend = getattr(torch, device.type, None)
    if device.type != "cpu" and hasattr(backend, "empty_cache"):
        backend.empty_cache()


def _meminfo_available() -> int | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def default_memory_budget(device: torch.device) -> int:
    """Bytes a batch may use: 80% of the free accelerator memory, or half of the available RAM on CPU."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free * 0.8)
    if device.type == "xpu" and hasattr(torch.xpu, "mem_get_info"):
        free, _ = torch.xpu.mem_get_info(device)
        return int(free * 0.8)
    available = _meminfo_available()
    return int(available * 0.5) if available else 2 << 30


class _PeakMeter:
    """Peak memory above the current level during a block: device allocator stats, Linux peak RSS, or None."""

    def __init__(self, device: torch.device):
        self.device = device
        self.kind = None
        if device.type in ("cuda", "xpu") and hasattr(getattr(torch, device.type), "max_memory_allocated"):
            self.kind = "device"
        elif device.type == "cpu" and os.path.exists("/proc/self/clear_refs"):
            self.kind = "rss"

    @staticmethod
    def _status(field: str) -> int:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field):
                    return int(line.split()[1]) * 1024
        raise OSError(field)

    def __enter__(self):
        if self.kind == "device":
            backend = getattr(torch, self.device.type)
            backend.synchronize(self.device)
            backend.reset_peak_memory_stats(self.device)
            self.base = backend.memory_allocated(self.device)
        elif self.kind == "rss":
            try:
                with open("/proc/self/clear_refs", "w") as f:
                    f.write("5")  # resets VmHWM (peak RSS) to the current RSS
                self.base = self._status("VmRSS:")
            except OSError:
                self.kind = None
        return self

    def __exit__(self, *exc) -> None:
        self.peak = None
        if self.kind == "device":
            backend = getattr(torch, self.device.type)
            backend.synchronize(self.device)
            self.peak = backend.max_memory_allocated(self.device) - self.base
        elif self.kind == "rss":
            self.peak = self._status("VmHWM:") - self.base


def _largest_output_bytes(model: torch.nn.Module, run: Callable[[], object]) -> int:
    """Fallback estimate: 3x the largest module output seen during ``run()`` (input, output and a residual)."""
    largest = [0]

    def hook(_module, _inputs, output):
        if isinstance(output, torch.Tensor):
            items = [output]
        elif isinstance(output, dict):  # includes transformers' ModelOutput
            items = list(output.values())
        else:
            items = list(output) if isinstance(output, (tuple, list)) else []
        for t in items:
            if isinstance(t, torch.Tensor):
                largest[0] = max(largest[0], t.numel() * t.element_size())

    handles = [m.register_forward_hook(hook) for m in model.modules()]
    try:
        run()
    finally:
        for h in handles:
            h.remove()
    return 3 * largest[0]


def measure_bytes_per_image(
    model: torch.nn.Module, forward: Callable[[torch.Tensor], object], trial: torch.Tensor
) -> tuple[int, str]:
    """Peak extra memory of ``forward(trial)`` divided by the trial batch size, and how it was measured."""
    meter = _PeakMeter(trial.device)
    with meter:
        forward(trial)
    if meter.peak is not None and meter.peak > 0:
        return max(1, meter.peak // trial.shape[0]), meter.kind
    return max(1, _largest_output_bytes(model, lambda: forward(trial)) // trial.shape[0]), "estimate"


def pick_batch_size(bytes_per_image: int, memory_budget: int, max_batch_size: int = 256) -> int:
    """The largest power of two ``<= max_batch_size`` whose batch fits ``memory_budget`` (at least 1).

    >>> pick_batch_size(bytes_per_image=10_000_000, memory_budget=1_000_000_000)
    64
    """
    fits = max(1, min(max_batch_size, memory_budget // max(1, bytes_per_image)))
    return 1 << (fits.bit_length() - 1)
