"""Resumable checkpoints: accelerate's full state, written atomically, the weights in diffusers' own layout.

Layout of ``checkpoint-{step}/`` (the same as diffusers' DreamBooth scripts, plus hfvision's extras)::

    unet/ (+ text_encoder*/)         full runs: the trained models, ``UNet2DConditionModel.from_pretrained(
                                     out, subfolder="checkpoint-N/unet")`` loads them
    pytorch_lora_weights.safetensors LoRA runs: ``pipe.load_lora_weights(checkpoint)`` loads them
    optimizer.bin            accelerate: optimizer state (loaded with weights_only=True)
    scheduler.bin            accelerate: LR scheduler state
    random_states_{rank}.pkl accelerate: Python/NumPy/torch RNG states (weights_only=True)
    noise_rng_{rank}.safetensors   the trainer's noise/timestep generator
    trainer_state.json       step, epoch, batch position, text-encoder stage, run identity; written last

Checkpoints written before the layout change hold the weights in a ``weights/`` subfolder; they still resume.
A checkpoint records its run identity (see [`DreamBoothConfig.run_identity`]): ``"latest"`` only picks the current
run's checkpoints.

Everything is first written to ``.checkpoint-{step}.tmp`` and renamed into place, so a kill mid-write leaves no
half checkpoint that "latest" could pick up (hidden temp folders are ignored and cleaned up next time).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import torch

from ...utils.io import atomic_write, checkpoint_step
from ...utils.logging import get_logger

logger = get_logger(__name__)

CHECKPOINT_PREFIX = "checkpoint-"
STATE_NAME = "trainer_state.json"
WEIGHTS_DIR = "weights"


def list_checkpoints(root: str | os.PathLike, config=None) -> list[tuple[int, Path]]:
    """Complete checkpoints under ``root`` as ``(step, path)``, oldest first; only ``config``'s run's if given."""
    root = Path(root)
    found = []
    if root.is_dir():
        for path in root.iterdir():
            step = checkpoint_step(path)
            if step is not None and (path / STATE_NAME).is_file():
                if config is None or belongs_to_run(read_trainer_state(path), config):
                    found.append((step, path))
    return sorted(found)


def belongs_to_run(state: dict, config) -> bool:
    """Whether a checkpoint's ``trainer_state.json`` was written by ``config``'s run (or a resumption of it).

    Checkpoints from before run identities were recorded are matched on the options they saved.
    """
    if "run_id" in state:
        return state["run_id"] == config.run_identity()
    saved = state.get("config", {})
    return all(saved[k] == getattr(config, k, None) for k in saved)


def resolve_checkpoint(spec: str | None, root: str | os.PathLike, config=None) -> Path | None:
    """``"latest"`` (newest complete checkpoint of ``config``'s run, or `None`), a checkpoint folder, or a name under
    ``root``."""
    if not spec:
        return None
    if spec == "latest":
        found = list_checkpoints(root, config)
        return found[-1][1] if found else None
    for candidate in (Path(os.path.expanduser(spec)), Path(root) / spec):
        if candidate.is_dir():
            if not (candidate / STATE_NAME).is_file():
                raise ValueError(f"{candidate} is not a complete hfvision checkpoint (no {STATE_NAME})")
            return candidate
    raise FileNotFoundError(f"resume_from_checkpoint={spec!r}: no such checkpoint (looked in {root}); use 'latest'")


def read_trainer_state(checkpoint: str | os.PathLike) -> dict:
    return json.loads((Path(checkpoint) / STATE_NAME).read_text(encoding="utf-8"))


def check_resumable(checkpoint: Path, state: dict, config, num_processes: int, micro_batches_per_epoch: int) -> None:
    """Refuse to resume when the data order, noise or parameters would not continue the same run."""
    from .config import RESUME_INVARIANT_FIELDS

    saved = state.get("config", {})
    for key in RESUME_INVARIANT_FIELDS:
        if key in saved and saved[key] != getattr(config, key):
            raise ValueError(
                f"cannot resume from {checkpoint}: {key} was {saved[key]!r} and is now {getattr(config, key)!r}"
            )
    if state.get("num_processes", 1) != num_processes:
        raise ValueError(
            f"cannot resume from {checkpoint}: it was written by {state['num_processes']} processes, "
            f"this run has {num_processes}"
        )
    if state.get("micro_batches_per_epoch") not in (None, micro_batches_per_epoch):
        raise ValueError(f"cannot resume from {checkpoint}: the number of instance or class images changed")


def _save_generator(generator: torch.Generator, path: Path) -> None:
    from safetensors.torch import save_file

    save_file({"state": generator.get_state()}, str(path))


def _load_generator(generator: torch.Generator, path: Path) -> None:
    from safetensors.torch import load_file

    generator.set_state(load_file(str(path))["state"])


class CheckpointManager:
    """Saves and restores checkpoints through an ``Accelerator``.

    Args:
        accelerator (`accelerate.Accelerator`): owns models, optimizer, scheduler and RNG state.
        root (`Path`): folder holding ``checkpoint-*``.
        total_limit (`int`, *optional*): keep at most this many checkpoints (oldest removed after a save).
        save_weights (`Callable[[Path], None]`): writes the trained weights into a folder (main process).
        load_weights (`Callable[[Path], None]`): loads them back into the models (every process).
    """

    def __init__(
        self,
        accelerator,
        root: Path,
        total_limit: int | None,
        save_weights: Callable[[Path], None],
        load_weights: Callable[[Path], None],
    ):
        self.accelerator, self.root, self.total_limit = accelerator, Path(root), total_limit
        self._save_weights, self._load_weights = save_weights, load_weights
        accelerator.register_save_state_pre_hook(self._save_hook)
        accelerator.register_load_state_pre_hook(self._load_hook)

    # accelerate hooks: the weights are ours to write (diffusers layout), so accelerate's lists are emptied.
    def _save_hook(self, models, weights, output_dir) -> None:
        if self.accelerator.is_main_process:
            self._save_weights(Path(output_dir))
        weights.clear()

    def _load_hook(self, models, input_dir) -> None:
        legacy = Path(input_dir) / WEIGHTS_DIR  # layout before diffusers' (weights in a subfolder)
        self._load_weights(legacy if legacy.is_dir() else Path(input_dir))
        models.clear()

    def save(self, step: int, state: dict, generators: dict[str, torch.Generator]) -> Path:
        """Write ``checkpoint-{step}`` atomically (collective: call on every process) and prune old ones."""
        acc = self.accelerator
        final = self.root / f"{CHECKPOINT_PREFIX}{step}"
        tmp = self.root / f".{CHECKPOINT_PREFIX}{step}.tmp"
        if acc.is_main_process:
            self.root.mkdir(parents=True, exist_ok=True)
            shutil.rmtree(tmp, ignore_errors=True)
        acc.wait_for_everyone()
        acc.save_state(str(tmp))
        for name, generator in generators.items():
            _save_generator(generator, tmp / f"{name}_{acc.process_index}.safetensors")
        acc.wait_for_everyone()
        if acc.is_main_process:
            with atomic_write(tmp / STATE_NAME, "w") as f:
                json.dump({**state, "global_step": step}, f, indent=2)
            if final.exists():  # re-saving the same step (e.g. after a resume): replace it
                shutil.rmtree(final)
            os.replace(tmp, final)
            self.prune()
            logger.info("saved checkpoint %s", final)
        acc.wait_for_everyone()
        return final

    def prune(self) -> None:
        for stale in self.root.glob(f".{CHECKPOINT_PREFIX}*.tmp"):
            shutil.rmtree(stale, ignore_errors=True)
        if self.total_limit is None:
            return
        found = list_checkpoints(self.root)
        for _, path in found[: max(0, len(found) - self.total_limit)]:
            logger.info("removing old checkpoint %s (checkpoints_total_limit=%d)", path, self.total_limit)
            shutil.rmtree(path, ignore_errors=True)

    def load(self, checkpoint: Path, generators: dict[str, torch.Generator]) -> dict:
        """Restore models, optimizer, scheduler, RNGs and the trainer's generators; return the trainer state."""
        state = read_trainer_state(checkpoint)
        self.accelerator.load_state(str(checkpoint))
        for name, generator in generators.items():
            path = checkpoint / f"{name}_{self.accelerator.process_index}.safetensors"
            if not path.is_file():
                raise FileNotFoundError(
                    f"{path} is missing: checkpoint {checkpoint} was written by a run with fewer processes"
                )
            _load_generator(generator, path)
        return state
