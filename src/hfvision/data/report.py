"""What :func:`~hfvision.data.prepare_instance_images` did with every file: a JSON-able report and a text table.

Every file of the source folder gets one :class:`PrepareEntry` (caption sidecars excepted) with a ``status``:

- ``accepted``: prepared now (``output`` written);
- ``rejected``: not usable, ``reason`` is one of ``empty``, ``not a file``, ``unreadable``, ``not an image``,
  ``corrupt``, ``truncated``, ``decompression bomb``, ``too small``, ``too large``, ``bad caption``, with ``detail``;
- ``skipped``: already prepared with the same content and settings (``output`` is the existing file), or not an image
  file at all (hidden files, other extensions, sub-folders; ``output`` is empty);
- ``duplicate``: same bytes as ``duplicate_of``, which is the one prepared.

>>> report = prepare_instance_images("photos", "prepared")
>>> print(report.to_table())
>>> report.to_json("prepare_report.json")
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..utils.io import atomic_write

STATUSES = ("accepted", "rejected", "skipped", "duplicate")


@dataclass
class PrepareEntry:
    """One source file's outcome. Boxes are ``(left, top, right, bottom)`` in the upright source image's pixels."""

    source: str
    status: str
    reason: str = ""
    detail: str = ""
    sha256: str | None = None
    original_size: tuple[int, int] | None = None
    faces: list[dict] = field(default_factory=list)
    crop_box: tuple[int, int, int, int] | None = None
    crop_method: str | None = None
    note: str = ""
    output: str | None = None
    output_size: tuple[int, int] | None = None
    upscaled: bool = False
    caption: str | None = None
    caption_source: str | None = None
    duplicate_of: str | None = None

    def __post_init__(self):
        if self.status not in STATUSES:
            raise ValueError(f"status={self.status!r} is not one of {STATUSES}")
        for name in ("original_size", "crop_box", "output_size"):  # JSON round trips give lists
            value = getattr(self, name)
            if value is not None:
                setattr(self, name, tuple(value))


@dataclass
class PrepareReport:
    """The outcome of one preparation run.

    Attributes:
        src (`str`), dst (`str`): source and output folders.
        options (`dict`): the [`PrepareOptions`] used.
        entries (`list[PrepareEntry]`): one per source file, in file-name order.
        removed (`list[str]`): outputs deleted because their source is gone (only with ``prune=True``).
        seconds (`float`): wall time.
    """

    src: str
    dst: str
    options: dict
    entries: list[PrepareEntry] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def by_status(self, status: str) -> list[PrepareEntry]:
        return [e for e in self.entries if e.status == status]

    @property
    def accepted(self) -> list[PrepareEntry]:
        return self.by_status("accepted")

    @property
    def rejected(self) -> list[PrepareEntry]:
        return self.by_status("rejected")

    @property
    def skipped(self) -> list[PrepareEntry]:
        return self.by_status("skipped")

    @property
    def duplicates(self) -> list[PrepareEntry]:
        return self.by_status("duplicate")

    def counts(self) -> dict[str, int]:
        """``{"accepted": n, "rejected": n, "skipped": n, "duplicate": n, "upscaled": n}``."""
        out = {s: len(self.by_status(s)) for s in STATUSES}
        out["upscaled"] = sum(e.upscaled for e in self.entries if e.status == "accepted")
        return out

    def images(self) -> list[Path]:
        """Every prepared image this run produced or found up to date, sorted."""
        return sorted(Path(e.output) for e in self.entries if e.output and e.status in ("accepted", "skipped"))

    def entry(self, source: str) -> PrepareEntry:
        """The entry of the source file named ``source``."""
        for e in self.entries:
            if e.source == source:
                return e
        raise KeyError(f"{source!r} is not in this report")

    def to_dict(self) -> dict:
        return {**asdict(self), "counts": self.counts()}

    def to_json(self, path: str | os.PathLike) -> Path:
        """Write the report as JSON (atomically) and return the path."""
        path = Path(path)
        with atomic_write(path, "w") as f:
            json.dump(self.to_dict(), f, indent=2, ensure_ascii=False)
        return path

    @classmethod
    def from_json(cls, path: str | os.PathLike) -> PrepareReport:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        data.pop("counts", None)
        data["entries"] = [PrepareEntry(**e) for e in data.get("entries", [])]
        return cls(**data)

    def summary(self) -> str:
        c = self.counts()
        text = ", ".join(f"{c[s]} {s}" for s in STATUSES)
        if c["upscaled"]:
            text += f" ({c['upscaled']} upscaled)"
        if self.removed:
            text += f", {len(self.removed)} stale outputs removed"
        return f"{text} in {self.seconds:.1f} s -> {self.dst}"

    def to_table(self, max_name: int = 32) -> str:
        """A plain-text table: file, status, size, crop, faces, output, caption (``[s]``idecar, ``[f]``ile name or
        ``[i]``nstance prompt) and the reason or note."""

        def short(text: str, n: int) -> str:
            return text if len(text) <= n else text[: n - 1] + "…"

        rows = [("file", "status", "size", "crop", "faces", "output", "caption", "reason / note")]
        for e in self.entries:
            size = "x".join(map(str, e.original_size)) if e.original_size else ""
            crop = e.crop_method or ""
            if e.upscaled:
                crop += " (upscaled)"
            out = Path(e.output).name if e.output else (f"= {e.duplicate_of}" if e.duplicate_of else "")
            why = ": ".join(p for p in (e.reason, e.detail) if p) or e.note
            caption = "" if e.caption_source in (None, "none") else short(f"[{e.caption_source[0]}] {e.caption}", 32)
            rows.append(
                (
                    short(e.source, max_name),
                    e.status,
                    size,
                    crop,
                    str(len(e.faces)) if e.faces else "",
                    short(out, 32),
                    caption,
                    short(why, 60),
                )
            )
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
        lines.insert(1, "  ".join("-" * w for w in widths))
        return "\n".join([*lines, "", self.summary()])
