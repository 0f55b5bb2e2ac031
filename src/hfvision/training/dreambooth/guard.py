"""No lost work: decide, before anything is loaded or written, which checkpoint a run resumes from and refuse to
start a run that would overwrite another run's model or checkpoints.

Every checkpoint records its run identity, and ``training_config.yaml`` in the output folder records the options
the identity is computed from (see [`DreamBoothConfig.run_identity`]). A run may write into a folder that is empty,
that holds only this run's checkpoints it resumes from, or that the user gave up with ``--overwrite_output_dir``.
"""

from __future__ import annotations

from pathlib import Path

from ...utils.logging import get_logger
from .checkpointing import list_checkpoints, read_trainer_state, resolve_checkpoint
from .config import RUN_IDENTITY_FIELDS, DreamBoothConfig
from .output import CONFIG_NAME

logger = get_logger(__name__)

MODEL_MARKERS = ("model_index.json", "pytorch_lora_weights.safetensors")
_RESUME_HINT = "pass --resume_from_checkpoint latest to continue it, or --overwrite_output_dir to start over"


def output_run_identity(output_dir: Path) -> str | None:
    """The run identity recorded by ``output_dir/training_config.yaml`` (`None`: none, or unreadable)."""
    try:
        return DreamBoothConfig.from_yaml(output_dir / CONFIG_NAME).run_identity()
    except (OSError, ValueError, TypeError):
        return None


def model_files(output_dir: Path) -> list[Path]:
    """The files that mark a saved model (pipeline or LoRA) in ``output_dir``."""
    return [output_dir / name for name in MODEL_MARKERS if (output_dir / name).is_file()]


def _difference(state: dict, config: DreamBoothConfig) -> str:
    saved = state.get("config", {})
    for key in RUN_IDENTITY_FIELDS:
        if key in saved and saved[key] != getattr(config, key):
            return f"{key} was {saved[key]!r} and is now {getattr(config, key)!r}"
    return "different options"


def plan_start(config: DreamBoothConfig, spec: str | None, output_dir: Path, checkpoints_dir: Path):
    """Returns ``(checkpoint to resume from or None, paths to delete first)``; raises if work would be lost.

    Args:
        config ([`DreamBoothConfig`]): the run.
        spec (`str`, *optional*): ``resume_from_checkpoint`` (``"latest"`` for sessions when unset).
        output_dir (`Path`): where the model is saved.
        checkpoints_dir (`Path`): where checkpoints are saved (``output_dir`` unless in a session).
    """
    if config.overwrite_output_dir:
        stale = [path for _, path in list_checkpoints(checkpoints_dir)] + model_files(output_dir)
        if stale:
            logger.warning("--overwrite_output_dir: deleting %s", ", ".join(str(p) for p in stale))
        return None, stale
    checkpoint = None
    if spec:
        try:
            checkpoint = resolve_checkpoint(spec, checkpoints_dir, config)
        except FileNotFoundError:
            if config.strict_resume:
                raise FileNotFoundError(
                    f"resume_from_checkpoint={spec!r}: no such checkpoint in {checkpoints_dir} (--strict_resume); "
                    "check the name or use 'latest'"
                ) from None
            logger.warning("checkpoint %r does not exist in %s: starting a new training run", spec, checkpoints_dir)
    models = model_files(output_dir)
    same_run = output_run_identity(output_dir) == config.run_identity()
    if checkpoint is not None:
        if models and not same_run:
            raise FileExistsError(
                f"{output_dir} holds another run's model ({models[0].name}); resume into its own --output_dir, or "
                "pass --overwrite_output_dir to replace it"
            )
        return checkpoint, []
    existing = list_checkpoints(checkpoints_dir)
    if spec == "latest" and existing:
        path = existing[-1][1]
        raise ValueError(
            f"cannot resume: the checkpoints in {checkpoints_dir} (e.g. {path.name}) belong to another run "
            f"({_difference(read_trainer_state(path), config)}); pass --overwrite_output_dir to start over there, "
            "or choose another --output_dir"
        )
    if existing or models:
        if existing:
            where, what = checkpoints_dir, f"checkpoints ({existing[-1][1].name})"
            whose = "this run's" if list_checkpoints(checkpoints_dir, config) else "another run's"
        else:
            where, what, whose = output_dir, f"a trained model ({models[0].name})", "another run's"
            whose = "this run's" if same_run else whose
        raise FileExistsError(f"{where} already holds {whose} {what}; {_RESUME_HINT}")
    return None, []
