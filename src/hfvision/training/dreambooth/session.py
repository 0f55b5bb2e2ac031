"""``--session NAME`` / ``--hub_session user/repo``: the trainer's view of a :class:`hfvision.data.Session`, optionally
mirrored to a private Hub repo by :class:`hfvision.hub.HubSessionMirror`.

A session supplies the instance images (new photos in ``raw/`` are prepared first), the class images, the
checkpoints (the run resumes from the latest) and the samples folder. With a Hub mirror, the session is restored
from the Hub before anything else (so the same command resumes on a fresh machine), each checkpoint is uploaded in
the background as it is saved, and the session files are uploaded at the end.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from ...utils.logging import get_logger
from .config import DreamBoothConfig
from .data import IMAGE_EXTENSIONS

logger = get_logger(__name__)


class TrainingSession:
    """A session (and its Hub mirror) as used by [`DreamBoothTrainer`]."""

    def __init__(self, session, mirror=None, prune_remote: bool = False):
        self.session, self.mirror, self.prune_remote = session, mirror, prune_remote

    instance_dir = property(lambda self: self.session.instance_dir)
    class_dir = property(lambda self: self.session.class_dir)
    checkpoints_dir = property(lambda self: self.session.checkpoints_dir)
    samples_dir = property(lambda self: self.session.samples_dir)
    model_dir = property(lambda self: Path(self.session.path) / "model")  # the trained model, inside the session

    def on_start(self, config: DreamBoothConfig) -> None:
        self.session.status = "training"
        self.session.settings.setdefault("base_model", config.pretrained_model_name_or_path)
        self.session.settings.setdefault("instance_prompt", config.resolved_instance_prompt)
        self.session.save()
        if self.mirror is not None:
            self.mirror.upload_session_files()

    def on_checkpoint(self, path: Path, step: int) -> None:
        if self.mirror is not None:
            self.mirror.upload_checkpoint(path, prune=self.prune_remote)

    def on_train_end(self, output_dir: Path, step: int) -> None:
        self.session.status = "trained"
        self.session.record_run({"steps": step, "output_dir": str(output_dir)})
        self.close()

    def on_failure(self, error: BaseException) -> None:
        self.session.status = "failed"
        self.session.record_run({"error": f"{type(error).__name__}: {error}"})
        self.close()

    def close(self) -> None:
        if self.mirror is not None:
            self.mirror.upload_session_files()
            self.mirror.close()


def _import_photos(source: Path, raw_dir: Path) -> int:
    """Copy photos (and caption sidecars) from ``source`` into ``raw/``; existing names are left alone."""
    count = 0
    raw_dir.mkdir(parents=True, exist_ok=True)
    for path in sorted(source.iterdir()):
        if path.suffix.lower() in (*IMAGE_EXTENSIONS, ".txt") and not path.name.startswith("."):
            target = raw_dir / path.name
            if not target.exists():
                shutil.copy2(path, target)
                count += 1
    return count


def open_session(config: DreamBoothConfig, prepare: bool = True) -> TrainingSession:
    """Open (or create, or restore from the Hub) the session and prepare new photos at the training resolution.

    With ``prepare=False`` (non-main processes) the session is only opened.
    """
    from ...data import Session

    name = config.session or config.hub_session.split("/")[1]
    mirror = None
    if not prepare:
        return TrainingSession(Session.open(name, root=config.session_root))
    if config.hub_session:
        from ...hub import HubSessionMirror

        mirror = HubSessionMirror(config.hub_session, name, root=config.session_root)
        session = mirror.restore()
    else:
        session = Session.create(name, root=config.session_root, exist_ok=True)
    if config.instance_data_dir:
        copied = _import_photos(Path(config.instance_data_dir), session.raw_dir)
        if copied:
            logger.info("copied %d photos from %s into session %s", copied, config.instance_data_dir, session.name)
    if session.pending_raw_images():
        session.settings.setdefault("instance_prompt", config.resolved_instance_prompt)
        session.settings.setdefault("caption_from_filename", config.caption_from_filename)
        report = session.prepare(config.resolution, crop="center" if config.center_crop else "smart")
        logger.info("prepared session photos: %s", report.counts())
    if not session.instance_images():
        raise ValueError(f"session {session.name!r} has no photos: put them in {session.raw_dir}")
    return TrainingSession(session, mirror, prune_remote=config.checkpoints_total_limit is not None)
