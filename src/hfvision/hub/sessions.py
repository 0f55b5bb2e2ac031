"""Hub-backed DreamBooth sessions: mirror a session folder to a private Hub model repo and restore it anywhere.

The repo's layout is the session folder's layout (``session.json``, ``raw/``, ``instance_images/``,
``class_images/``, ``samples/``, ``checkpoints/checkpoint-<step>/``), so the Hub plays the part Google Drive plays for
fast-stable-diffusion: train, lose the machine, run the same command elsewhere and resume.

Interface used by the DreamBooth trainer:

- ``HubSessionMirror(repo_id, session, token=None)``: ``session`` is a :class:`~hfvision.data.Session` or the name /
  path where it lives (or will live) locally. Nothing touches the network until a method is called.
- ``restore(checkpoints="latest") -> Session``: creates the repo (private) if needed; if the repo holds a session,
  downloads it (pinned to one commit, every file checked against the Hub's sha256 / git oid) and merges it into the
  local folder: files missing locally are added, each checkpoint folder is moved in whole, local files are never
  overwritten. A new repo, or one without ``session.json``, is a no-op (the local session is opened or created).
- ``upload_checkpoint(path, prune=False)``: returns at once; the folder is staged (hard links, so the trainer may
  delete it right away) and uploaded by a background thread as **one commit** (with a snapshot of ``session.json``),
  so a reader sees either the whole checkpoint or none of it. ``prune=True`` also deletes, in that commit, remote
  checkpoints that no longer exist locally (mirrors ``checkpoints_total_limit``). At most ``max_pending`` checkpoint
  uploads wait in the queue; when a newer one arrives the oldest waiting one is dropped (logged and listed in
  ``dropped``), so training never blocks on a slow link.
- ``upload_session_files()``: queues one commit with everything except checkpoints (unchanged files are not re-sent).
- ``wait()``: blocks until the queue is empty; raises `RuntimeError` naming every upload that failed (after retries).
- ``close()``: waits, stops the worker and removes the staging folder. The worker is not a daemon thread, so a
  process that exits with uploads queued finishes them first.

>>> session = Session.create("dog", instance_prompt="a photo of sks dog")
>>> mirror = HubSessionMirror("me/dog-session", session)
>>> session = mirror.restore()          # on a fresh machine this downloads the session
>>> mirror.upload_checkpoint(session.checkpoints_dir / "checkpoint-500")
>>> mirror.close()
"""

from __future__ import annotations

import collections
import filecmp
import glob
import os
import shutil
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..data.sessions import DEFAULT_ROOT, SESSION_FILE, Session
from ..utils.io import checkpoint_step
from ..utils.logging import get_logger

logger = get_logger(__name__)

STAGING_DIR = ".hub-staging"
CHECKPOINTS = "checkpoints"
#: Never uploaded with the session files: checkpoints have their own commits; the rest is local scratch.
SESSION_IGNORE = [f"{CHECKPOINTS}/*", f"{STAGING_DIR}/*", ".cache/*", "*.tmp", "*/.*.tmp"]


@dataclass
class _Job:
    kind: str  # "checkpoint" | "session"
    label: str
    staged: Path | None = None
    keep: list[str] | None = None  # prune: the local checkpoint names when the job was queued


def _retryable(err: BaseException) -> bool:
    status = getattr(getattr(err, "response", None), "status_code", None)
    return not (isinstance(status, int) and 400 <= status < 500 and status not in (408, 429))


def _link_tree(src: Path, dst: Path) -> None:
    """Copy ``src`` to ``dst`` as hard links (a plain copy where linking is impossible)."""
    for file in sorted(src.rglob("*")):
        target = dst / file.relative_to(src)
        if file.is_dir():
            target.mkdir(parents=True, exist_ok=True)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(file, target)
        except OSError:
            shutil.copy2(file, target)


class HubSessionMirror:
    """Mirror a DreamBooth [`Session`] to a private Hub repo (see the module docstring).

    Args:
        repo_id (`str`): ``"user/name"`` of the model repo to use (created private if missing).
        session ([`Session`], `str` or `os.PathLike`): the local session, or its name (under ``root``) / folder path.
        token (`str`, *optional*): Hub token; defaults to the logged-in one.
        root (`str`, *optional*, defaults to `"sessions"`): parent folder when ``session`` is a bare name.
        revision (`str`, *optional*, defaults to `"main"`): branch to use.
        private (`bool`, *optional*, defaults to `True`): refuse to use an existing public repo (sessions hold
            personal photos) unless set to `False`.
        max_pending (`int`, *optional*, defaults to 2): checkpoint uploads allowed to wait in the queue.
        retries (`int`, *optional*, defaults to 3): attempts after the first for a failed upload (network and 5xx
            errors; 4xx errors other than 408/429 fail at once).
        retry_wait (`float`, *optional*, defaults to 2.0): first back-off in seconds (doubles each attempt).
    """

    def __init__(
        self,
        repo_id: str,
        session: Session | str | os.PathLike,
        token: str | None = None,
        *,
        root: str | os.PathLike = DEFAULT_ROOT,
        revision: str = "main",
        private: bool = True,
        max_pending: int = 2,
        retries: int = 3,
        retry_wait: float = 2.0,
    ):
        if not isinstance(repo_id, str) or repo_id.count("/") != 1:
            raise ValueError(f"repo_id={repo_id!r} must look like 'user/name'")
        if max_pending < 1:
            raise ValueError(f"max_pending={max_pending} must be at least 1")
        self.repo_id, self.token, self.revision, self.private = repo_id, token, revision, private
        self.max_pending, self.retries, self.retry_wait = max_pending, retries, retry_wait
        if isinstance(session, Session):
            self._session: Session | None = session
            self.path = session.path
        else:
            candidate = Path(session)
            by_path = (
                (candidate / SESSION_FILE).is_file() or isinstance(session, os.PathLike) or os.sep in str(session)
            )
            self._session, self.path = None, candidate if by_path else Path(root) / candidate
        self._cond = threading.Condition()
        self._queue: collections.deque[_Job] = collections.deque()
        self._worker: threading.Thread | None = None
        self._busy = False
        self._repo_ready = False
        self.errors: list[str] = []
        self.dropped: list[str] = []
        self.commits: list[tuple[str, str]] = []  # (label, commit sha) of finished uploads

    # -- helpers --------------------------------------------------------------------------------------------------
    @property
    def session(self) -> Session:
        if self._session is None:
            self._session = Session.open(self.path)
        self._session.hub_repo = self.repo_id
        return self._session

    def _api(self):
        from huggingface_hub import HfApi

        return HfApi(token=self.token)

    def _ensure_repo(self) -> None:
        if self._repo_ready:
            return
        api = self._api()
        api.create_repo(self.repo_id, private=self.private, exist_ok=True, repo_type="model")
        info = api.repo_info(self.repo_id, repo_type="model")
        if self.private and not info.private:
            raise ValueError(
                f"Hub repo {self.repo_id} is public; a session holds personal photos. Make it private or pass "
                "private=False to HubSessionMirror"
            )
        self._repo_ready = True

    # -- restore --------------------------------------------------------------------------------------------------
    def restore(self, checkpoints: str = "latest") -> Session:
        """Download the session from the Hub into the local folder (see the module docstring) and open it.

        Args:
            checkpoints (`str`, *optional*, defaults to `"latest"`): ``"latest"`` (enough to resume), ``"all"``,
                or ``"none"``.

        Returns:
            [`Session`]: the local session (created if neither side had one).
        """
        from huggingface_hub import snapshot_download

        if checkpoints not in ("latest", "all", "none"):
            raise ValueError(f"checkpoints={checkpoints!r} must be 'latest', 'all' or 'none'")
        self._ensure_repo()
        api = self._api()
        sha = api.repo_info(self.repo_id, revision=self.revision).sha
        remote = {
            f.path: f for f in api.list_repo_tree(self.repo_id, revision=sha, recursive=True) if hasattr(f, "blob_id")
        }
        if SESSION_FILE not in remote:
            logger.info("Hub repo %s holds no session yet; nothing to restore", self.repo_id)
            if (self.path / SESSION_FILE).is_file():
                return self.session
            self._session = Session.create(self.path.name, root=self.path.parent)
            return self.session
        names = sorted(
            {p.split("/")[1] for p in remote if p.startswith(f"{CHECKPOINTS}/") and p.count("/") >= 2},
            key=lambda n: (checkpoint_step(n) is None, checkpoint_step(n) or 0),
        )
        valid = [n for n in names if checkpoint_step(n) is not None]
        chosen = set(valid if checkpoints == "all" else valid[-1:] if checkpoints == "latest" else [])
        wanted = [p for p in remote if not p.startswith(f"{CHECKPOINTS}/") or p.split("/")[1] in chosen]
        tmp = self.path.parent / f".{self.path.name}.restore-{uuid.uuid4().hex[:8]}"
        try:
            snapshot_download(
                self.repo_id,
                revision=sha,
                local_dir=tmp,
                token=self.token,
                allow_patterns=[glob.escape(p) for p in wanted],
            )
            shutil.rmtree(tmp / ".cache", ignore_errors=True)
            for rel in wanted:
                self._verify(tmp / rel, remote[rel])
            self._merge(tmp)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        self._session = Session.open(self.path)
        logger.info(
            "restored session %s from %s@%s (%d files, checkpoints: %s)",
            self.path,
            self.repo_id,
            sha[:8],
            len(wanted),
            ", ".join(sorted(chosen, key=checkpoint_step)) or "none",
        )
        return self.session

    @staticmethod
    def _verify(local: Path, entry: Any) -> None:
        if not local.is_file() or local.stat().st_size != entry.size:
            raise RuntimeError(f"restore: {entry.path} is missing or has the wrong size after download")
        from huggingface_hub.utils.sha import git_hash, sha_fileobj

        if entry.lfs is not None:
            with open(local, "rb") as f:
                ok = sha_fileobj(f).hex() == entry.lfs.sha256
        else:  # regular (non-LFS) files are small: git's blob id over the whole content
            ok = git_hash(local.read_bytes()) == entry.blob_id
        if not ok:
            raise RuntimeError(f"restore: {entry.path} does not match the Hub's checksum; try again")

    def _merge(self, tmp: Path) -> None:
        """Move downloaded files into the session folder without overwriting anything local."""
        if not self.path.exists():
            self.path.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp, self.path)
            return
        kept = []
        ckpt_root = tmp / CHECKPOINTS
        if ckpt_root.is_dir():
            for folder in ckpt_root.iterdir():
                target = self.path / CHECKPOINTS / folder.name
                if target.exists():
                    kept.append(f"{CHECKPOINTS}/{folder.name}")
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(folder, target)  # one rename: a checkpoint appears whole or not at all
            shutil.rmtree(ckpt_root)
        for file in sorted(p for p in tmp.rglob("*") if p.is_file()):
            rel = file.relative_to(tmp)
            target = self.path / rel
            if target.exists():
                if not filecmp.cmp(target, file, shallow=False):
                    kept.append(str(rel))
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(file, target)
        if kept:
            logger.warning(
                "restore kept the local version of %d path(s) that differ on the Hub: %s",
                len(kept),
                ", ".join(kept[:10]),
            )

    # -- uploads --------------------------------------------------------------------------------------------------
    def upload_checkpoint(self, path: str | os.PathLike, prune: bool = False) -> None:
        """Queue ``path`` (a ``checkpoint-<step>`` folder) for upload as one commit; returns immediately.

        Args:
            path (`str` or `os.PathLike`): the checkpoint folder (it may be deleted as soon as this returns).
            prune (`bool`, *optional*, defaults to `False`): in the same commit, delete remote checkpoints that are
                no longer in the local ``checkpoints/`` folder.
        """
        path = Path(path)
        if checkpoint_step(path) is None:
            raise ValueError(f"{path}: checkpoint folders must be named checkpoint-<step>")
        if not path.is_dir():
            raise FileNotFoundError(f"{path}: checkpoint folder not found")
        staged = self.path / STAGING_DIR / f"{path.name}-{uuid.uuid4().hex[:8]}"
        _link_tree(path, staged / CHECKPOINTS / path.name)
        if (self.path / SESSION_FILE).is_file():
            shutil.copy2(self.path / SESSION_FILE, staged / SESSION_FILE)
        keep = [p.name for p in self.session.checkpoints()] if prune else None
        if keep is not None and path.name not in keep:
            keep.append(path.name)
        self._enqueue(_Job("checkpoint", path.name, staged, keep))

    def upload_session_files(self) -> None:
        """Queue one commit with the session's files except checkpoints; returns immediately."""
        if not (self.path / SESSION_FILE).is_file():
            raise FileNotFoundError(f"{self.path}: no {SESSION_FILE}; create or restore the session first")
        self._enqueue(_Job("session", "session files"))

    def _enqueue(self, job: _Job) -> None:
        with self._cond:
            if job.kind == "session" and any(j.kind == "session" for j in self._queue):
                return  # a waiting session upload reads the files when it runs: one is enough
            if job.kind == "checkpoint":
                waiting = [j for j in self._queue if j.kind == "checkpoint"]
                while len(waiting) >= self.max_pending:
                    old = waiting.pop(0)
                    self._queue.remove(old)
                    shutil.rmtree(old.staged, ignore_errors=True)
                    self.dropped.append(old.label)
                    logger.warning(
                        "not uploading %s: %s arrived while uploads were still pending", old.label, job.label
                    )
            self._queue.append(job)
            if self._worker is None or not self._worker.is_alive():
                self._worker = threading.Thread(target=self._run, name=f"hub-mirror-{self.repo_id}", daemon=False)
                self._worker.start()
            self._cond.notify_all()

    def _run(self) -> None:
        while True:
            with self._cond:
                if not self._queue:
                    self._worker = None
                    self._cond.notify_all()
                    return
                job = self._queue.popleft()
                self._busy = True
            try:
                self._attempt(job)
            finally:
                if job.staged is not None:
                    shutil.rmtree(job.staged, ignore_errors=True)
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()

    def _attempt(self, job: _Job) -> None:
        for attempt in range(self.retries + 1):
            try:
                self._ensure_repo()
                sha = self._upload_checkpoint(job) if job.kind == "checkpoint" else self._upload_session(job)
                with self._cond:
                    self.commits.append((job.label, sha))
                logger.info("uploaded %s to %s (commit %s)", job.label, self.repo_id, sha[:8])
                return
            except Exception as err:  # noqa: BLE001 - reported by wait(); the training thread must not die
                if attempt < self.retries and _retryable(err):
                    delay = self.retry_wait * 2**attempt
                    logger.warning("upload of %s failed (%s); retrying in %.0f s", job.label, err, delay)
                    time.sleep(delay)
                    continue
                logger.error("upload of %s to %s failed: %s", job.label, self.repo_id, err)
                with self._cond:
                    self.errors.append(f"{job.label}: {type(err).__name__}: {err}")
                return

    def _upload_checkpoint(self, job: _Job) -> str:
        from huggingface_hub import CommitOperationAdd, CommitOperationDelete

        api = self._api()
        ops: list = []
        for file in sorted(p for p in job.staged.rglob("*") if p.is_file()):
            ops.append(CommitOperationAdd(path_in_repo=file.relative_to(job.staged).as_posix(), path_or_fileobj=file))
        if job.keep is not None:
            remote = api.list_repo_files(self.repo_id, revision=self.revision)
            gone = sorted(
                {p.split("/")[1] for p in remote if p.startswith(f"{CHECKPOINTS}/") and p.count("/") >= 2}
                - set(job.keep)
            )
            ops += [CommitOperationDelete(path_in_repo=f"{CHECKPOINTS}/{name}/", is_folder=True) for name in gone]
        info = api.create_commit(
            self.repo_id, operations=ops, commit_message=f"Upload {job.label}", revision=self.revision
        )
        return info.oid

    def _upload_session(self, job: _Job) -> str:
        info = self._api().upload_folder(
            repo_id=self.repo_id,
            folder_path=self.path,
            revision=self.revision,
            commit_message="Update session files",
            ignore_patterns=SESSION_IGNORE,
        )
        return info.oid

    # -- waiting --------------------------------------------------------------------------------------------------
    @property
    def pending(self) -> int:
        """Uploads queued or running."""
        with self._cond:
            return len(self._queue) + int(self._busy)

    def wait(self, timeout: float | None = None) -> None:
        """Block until every queued upload finished; raise `RuntimeError` listing the uploads that failed.

        Raises:
            `TimeoutError`: still uploading after ``timeout`` seconds.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while self._queue or self._busy:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise TimeoutError(
                        f"{len(self._queue) + int(self._busy)} upload(s) to {self.repo_id} still running"
                    )
                self._cond.wait(left)
            errors, self.errors = self.errors, []
        if errors:
            raise RuntimeError(f"{len(errors)} upload(s) to {self.repo_id} failed: " + "; ".join(errors))

    def close(self, wait: bool = True) -> None:
        """Finish (or with ``wait=False`` drop) queued uploads, then remove the staging folder."""
        try:
            if wait:
                self.wait()
            else:
                with self._cond:
                    for job in self._queue:
                        self.dropped.append(job.label)
                    self._queue.clear()
                worker = self._worker
                if worker is not None:
                    worker.join()
        finally:
            with self._cond:
                idle = not self._queue and not self._busy
            if idle:
                shutil.rmtree(self.path / STAGING_DIR, ignore_errors=True)

    def __enter__(self) -> HubSessionMirror:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:  # do not hide the original error behind an upload error
            try:
                self.close()
            except RuntimeError as err:
                logger.error("%s", err)
