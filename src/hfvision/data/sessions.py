"""DreamBooth sessions: one folder per subject that holds photos, prepared data, checkpoints and history.

Layout of ``<root>/<name>/`` (``root`` defaults to ``sessions``)::

    session.json          name, status, settings (base model, prompts, ...), history of runs, last preparation
    raw/                  drop new photos here (with optional ``name.txt`` caption sidecars)
    instance_images/      prepared squares + ``.txt`` captions (written by :meth:`Session.prepare`)
    class_images/         prior-preservation images
    checkpoints/          ``checkpoint-<step>/`` folders written by the trainer
    samples/              validation images

Captions live as sidecars next to the prepared images (no separate ``captions/`` folder).

Interface used by the DreamBooth trainer:

- ``Session.create(name, root="sessions", **settings)`` / ``Session.open(name_or_path, root="sessions")``;
- attributes ``path``, ``raw_dir``, ``instance_dir``, ``class_dir``, ``checkpoints_dir``, ``samples_dir``,
  ``settings`` (JSON-able dict), ``status`` (``"created"``, ``"prepared"``, then whatever the trainer sets, e.g.
  ``"training"``, ``"trained"``, ``"failed"``);
- ``prepare(size, crop="smart", **kw) -> PrepareReport``: prepares raw photos not prepared yet (content-hash based,
  see :func:`~hfvision.data.prepare_instance_images`; ``instance_prompt`` and ``caption_from_filename`` default to
  the session settings; outputs of removed raw photos are pruned);
- ``latest_checkpoint() -> Path | None``: the ``checkpoints/checkpoint-<step>`` folder with the highest step (names
  that do not match exactly, such as temporary ``.checkpoint-500.tmp`` folders, are ignored);
- ``record_run(info)``: appends ``info`` (JSON-able) with a timestamp to the history and saves;
- ``save()``: atomic write of ``session.json``.

>>> session = Session.create("dog", instance_prompt="a photo of sks dog", base_model="runwayml/stable-diffusion-v1-5")
>>> # copy photos into session.raw_dir, then
>>> report = session.prepare(512)
>>> session.latest_checkpoint() is None
True
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..utils.io import atomic_write, checkpoint_step
from ..utils.logging import get_logger
from .image_io import IMAGE_EXTENSIONS
from .prepare import _load_manifest

logger = get_logger(__name__)

SESSION_FILE = "session.json"
SESSION_FORMAT = "hfvision-session"
SESSION_VERSION = 1
DEFAULT_ROOT = "sessions"
SUBDIRS = {
    "raw_dir": "raw",
    "instance_dir": "instance_images",
    "class_dir": "class_images",
    "checkpoints_dir": "checkpoints",
    "samples_dir": "samples",
}
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _check_json(value: Any, what: str) -> None:
    try:
        json.dumps(value)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{what} must be JSON-serialisable (str, numbers, lists, dicts): {err}") from err


@dataclass
class Session:
    """A per-subject DreamBooth folder (see the module docstring for the layout). Use [`Session.create`] or
    [`Session.open`] rather than the constructor."""

    path: Path
    name: str
    settings: dict[str, Any] = field(default_factory=dict)
    status: str = "created"
    created_at: str = field(default_factory=_now)
    updated_at: str = field(default_factory=_now)
    runs: list[dict[str, Any]] = field(default_factory=list)
    last_prepare: dict[str, Any] | None = None
    hub_repo: str | None = None

    # -- folders --------------------------------------------------------------------------------------------------
    @property
    def raw_dir(self) -> Path:
        """Where users drop new photos (and optional ``name.txt`` captions)."""
        return self.path / SUBDIRS["raw_dir"]

    @property
    def instance_dir(self) -> Path:
        """Prepared instance images and their caption sidecars."""
        return self.path / SUBDIRS["instance_dir"]

    @property
    def class_dir(self) -> Path:
        return self.path / SUBDIRS["class_dir"]

    @property
    def checkpoints_dir(self) -> Path:
        return self.path / SUBDIRS["checkpoints_dir"]

    @property
    def samples_dir(self) -> Path:
        return self.path / SUBDIRS["samples_dir"]

    @property
    def session_file(self) -> Path:
        return self.path / SESSION_FILE

    # -- create / open / save -------------------------------------------------------------------------------------
    @classmethod
    def create(
        cls, name: str, root: str | os.PathLike = DEFAULT_ROOT, *, exist_ok: bool = False, **settings: Any
    ) -> Session:
        """Make ``<root>/<name>/`` with its sub-folders and ``session.json``.

        Args:
            name (`str`): letters, digits, ``.``, ``_``, ``-`` (no slashes), at most 96 characters.
            root (`str` or `os.PathLike`, *optional*, defaults to `"sessions"`): parent folder.
            exist_ok (`bool`, *optional*, defaults to `False`): open an existing session instead of failing
                (its settings are updated with ``settings``).
            **settings: JSON-able settings stored in ``session.json`` (``base_model``, ``instance_prompt``,
                ``class_prompt``, training options, ...).

        >>> Session.create("dog", root="sessions", instance_prompt="a photo of sks dog").raw_dir
        PosixPath('sessions/dog/raw')
        """
        if not isinstance(name, str) or not _NAME_RE.match(name) or name in (".", ".."):
            raise ValueError(f"session name {name!r} must be 1-96 letters, digits, '.', '_' or '-' (no slashes)")
        _check_json(settings, "session settings")
        path = Path(root) / name
        if (path / SESSION_FILE).exists():
            if not exist_ok:
                raise FileExistsError(f"session {name!r} already exists at {path}; open it or choose another name")
            session = cls.open(path)
            if settings:
                session.settings.update(settings)
                session.save()
            return session
        if path.exists() and any(path.iterdir()):
            raise FileExistsError(f"{path} exists and is not a session (no {SESSION_FILE}); choose another name")
        session = cls(path=path, name=name, settings=dict(settings))
        session.ensure_dirs()
        session.save()
        logger.info("created session %s at %s", name, path)
        return session

    @classmethod
    def open(cls, name_or_path: str | os.PathLike, root: str | os.PathLike = DEFAULT_ROOT) -> Session:
        """Open a session by name (under ``root``) or by the path of its folder.

        Raises:
            `FileNotFoundError`: there is no ``session.json`` there. `ValueError`: the file is not a session.
        """
        candidate = Path(name_or_path)
        path = candidate if (candidate / SESSION_FILE).is_file() else Path(root) / candidate
        file = path / SESSION_FILE
        if not file.is_file():
            raise FileNotFoundError(
                f"no session {str(name_or_path)!r} (looked for {file}); create it with "
                f"`hfvision session create {candidate.name}`"
            )
        try:
            data = json.loads(file.read_text(encoding="utf-8"))
        except ValueError as err:
            raise ValueError(f"{file} is not valid JSON ({err}); restore it from the Hub or a backup") from err
        if not isinstance(data, dict) or data.get("format") != SESSION_FORMAT:
            raise ValueError(f"{file} is not an hfvision session file (missing format={SESSION_FORMAT!r})")
        if data.get("version", 0) > SESSION_VERSION:
            raise ValueError(f"{file} has session format version {data['version']}; upgrade hfvision to open it")
        known = {"name", "settings", "status", "created_at", "updated_at", "runs", "last_prepare", "hub_repo"}
        session = cls(path=path, **{k: v for k, v in data.items() if k in known})
        session.ensure_dirs()
        return session

    def ensure_dirs(self) -> None:
        """Create any missing sub-folder (a restored or hand-made session may lack empty ones)."""
        for attr in SUBDIRS:
            getattr(self, attr).mkdir(parents=True, exist_ok=True)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": SESSION_FORMAT,
            "version": SESSION_VERSION,
            "name": self.name,
            "status": self.status,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "settings": self.settings,
            "hub_repo": self.hub_repo,
            "last_prepare": self.last_prepare,
            "runs": self.runs,
        }

    def save(self) -> Path:
        """Write ``session.json`` atomically (a crash leaves the previous version intact)."""
        _check_json(self.settings, "session settings")
        self.updated_at = _now()
        with atomic_write(self.session_file, "w") as f:
            json.dump(self.to_dict(), f, indent=2, ensure_ascii=False)
        return self.session_file

    # -- data and checkpoints -------------------------------------------------------------------------------------
    def prepare(self, size: int, crop: str = "smart", **kwargs: Any):
        """Prepare the photos in ``raw_dir`` that are not prepared yet into ``instance_dir``.

        ``instance_prompt`` and ``caption_from_filename`` default to the session settings; ``prune`` defaults to
        `True` (outputs of photos removed from ``raw/`` are deleted). Other keyword arguments go to
        [`prepare_instance_images`]. Records a summary in ``session.json``; status ``created`` becomes ``prepared``.

        Returns:
            [`PrepareReport`]
        """
        from .prepare import prepare_instance_images

        for key in ("instance_prompt", "caption_from_filename"):
            if key in self.settings and key not in kwargs:
                kwargs[key] = self.settings[key]
        kwargs.setdefault("prune", True)
        self.ensure_dirs()
        report = prepare_instance_images(self.raw_dir, self.instance_dir, size, crop, **kwargs)
        self.last_prepare = {
            "at": _now(),
            "size": size,
            "crop": crop,
            **report.counts(),
            "images": len(self.instance_images()),
        }
        if self.status == "created":
            self.status = "prepared"
        self.save()
        return report

    def instance_images(self) -> list[Path]:
        """The prepared images (sorted), i.e. what the trainer trains on."""
        if not self.instance_dir.is_dir():
            return []
        return sorted(p for p in self.instance_dir.iterdir() if p.is_file() and p.suffix.lower() in (".png", ".jpg"))

    def raw_images(self) -> list[Path]:
        """Files in ``raw_dir`` with an image extension (not yet validated)."""
        if not self.raw_dir.is_dir():
            return []
        return sorted(p for p in self.raw_dir.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)

    def pending_raw_images(self) -> list[Path]:
        """Raw photos whose content is not in the preparation manifest yet (hashes every raw file)."""
        from ..utils.io import sha256_file

        done = set(_load_manifest(self.instance_dir))
        pending = []
        for p in self.raw_images():
            try:
                if not p.is_file() or sha256_file(p) not in done:
                    pending.append(p)
            except OSError:
                pending.append(p)
        return pending

    def checkpoints(self) -> list[Path]:
        """``checkpoint-<step>`` folders sorted by step."""
        if not self.checkpoints_dir.is_dir():
            return []
        found = [p for p in self.checkpoints_dir.iterdir() if p.is_dir() and checkpoint_step(p) is not None]
        return sorted(found, key=checkpoint_step)

    def latest_checkpoint(self) -> Path | None:
        """The checkpoint folder with the highest step number, or ``None``."""
        found = self.checkpoints()
        return found[-1] if found else None

    def record_run(self, info: dict[str, Any]) -> None:
        """Append ``info`` (JSON-able: steps, seed, metrics, output paths...) to the run history and save."""
        if not isinstance(info, dict):
            raise ValueError(f"record_run expects a dict, got {type(info).__name__}")
        _check_json(info, "run info")
        self.runs.append({"recorded_at": _now(), **info})
        self.save()

    def describe(self) -> dict[str, Any]:
        """A JSON-able summary for ``hfvision session status``."""
        latest = self.latest_checkpoint()
        return {
            "name": self.name,
            "path": str(self.path),
            "status": self.status,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "hub_repo": self.hub_repo,
            "settings": self.settings,
            "raw_images": len(self.raw_images()),
            "pending_raw_images": len(self.pending_raw_images()),
            "instance_images": len(self.instance_images()),
            "class_images": sum(1 for p in self.class_dir.glob("*") if p.is_file()) if self.class_dir.is_dir() else 0,
            "checkpoints": [p.name for p in self.checkpoints()],
            "latest_checkpoint": str(latest) if latest else None,
            "samples": sum(1 for p in self.samples_dir.rglob("*") if p.is_file()) if self.samples_dir.is_dir() else 0,
            "runs": len(self.runs),
            "last_run": self.runs[-1] if self.runs else None,
            "last_prepare": self.last_prepare,
        }
