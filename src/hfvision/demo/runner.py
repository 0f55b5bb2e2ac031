"""Runs the demo steps in order and writes ``report.html``; a failing step is reported, not hidden."""

from __future__ import annotations

import html
import importlib
import json
import os
import pkgutil
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..utils.io import atomic_write
from ..utils.logging import get_logger

logger = get_logger(__name__)

NOTICE = (
    "The models in this demo are tiny and randomly initialised (built from configs, nothing is downloaded), "
    "so labels, scores and generated images are meaningless: the demo shows that every step runs end to end. "
    "Point it at real Hub models with the commands in README.md, e.g. "
    "<code>hfvision classify --task gender-classification --model rizvandwiki/gender-classification ...</code>."
)


@dataclass
class Section:
    title: str
    items: list[tuple[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    error: str | None = None

    def text(self, message: str) -> None:
        self.items.append(("text", message))

    def table(self, rows: list[dict], caption: str = "") -> None:
        self.items.append(("table", (caption, rows)))

    def image(self, path: str | os.PathLike, caption: str = "") -> None:
        self.items.append(("image", (str(path), caption)))

    def timing(self, label: str, seconds: float) -> None:
        self.items.append(("table", ("", [{"step": label, "seconds": round(seconds, 3)}])))


@dataclass
class DemoContext:
    """State shared by the steps: output folder, a scratch folder, cached tiny models, the local Hub."""

    output_dir: Path
    work_dir: Path
    hub_endpoint: str | None = None
    cache: dict[str, Any] = field(default_factory=dict)
    section: Section | None = None

    def path(self, name: str) -> Path:
        """A path inside ``output_dir`` (parents created) for files the report links to."""
        p = self.output_dir / name
        p.parent.mkdir(parents=True, exist_ok=True)
        return p

    def model_dir(self, name: str, builder) -> Path:
        """Build a tiny model once per demo run: ``builder(out_dir)`` is called on first use."""
        if name not in self.cache:
            out = self.work_dir / "models" / name
            builder(out)
            self.cache[name] = out
        return self.cache[name]


def discover_steps() -> list:
    from . import steps

    modules = [importlib.import_module(f"{steps.__name__}.{m.name}") for m in pkgutil.iter_modules(steps.__path__)]
    return sorted((m for m in modules if hasattr(m, "run")), key=lambda m: m.ORDER)


def run_demo(
    output_dir: str | os.PathLike,
    work_dir: str | os.PathLike,
    hub_endpoint: str | None = None,
    only: list[str] | None = None,
) -> Path:
    """Run every demo step, write ``output_dir/report.html`` and ``summary.json``; returns the report path."""
    ctx = DemoContext(Path(output_dir), Path(work_dir), hub_endpoint)
    ctx.output_dir.mkdir(parents=True, exist_ok=True)
    sections = []
    for module in discover_steps():
        name = module.__name__.rsplit(".", 1)[-1]
        if only and not any(o in name for o in only):
            continue
        ctx.section = Section(module.TITLE)
        logger.info("demo: %s", module.TITLE)
        start = time.perf_counter()
        try:
            module.run(ctx)
        except Exception as err:  # noqa: BLE001 - a failed step is shown in the report and the exit code
            ctx.section.error = f"{type(err).__name__}: {err}"
            logger.error("demo step %s failed:\n%s", name, traceback.format_exc())
        ctx.section.seconds = time.perf_counter() - start
        sections.append(ctx.section)
    report = ctx.output_dir / "report.html"
    with atomic_write(report, "w") as f:
        f.write(render_html(sections, ctx.output_dir))
    summary = [{"title": s.title, "seconds": round(s.seconds, 3), "error": s.error} for s in sections]
    with atomic_write(ctx.output_dir / "summary.json", "w") as f:
        json.dump(summary, f, indent=2)
    return report


def _table(rows: list[dict]) -> str:
    if not rows:
        return "<p><em>(empty)</em></p>"
    cols = list(dict.fromkeys(k for r in rows for k in r))
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in cols)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(r.get(c, '')))}</td>" for c in cols) + "</tr>" for r in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def render_html(sections: list[Section], root: Path) -> str:
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>hfvision demo</title><style>"
        "body{font-family:sans-serif;max-width:1000px;margin:2em auto}table{border-collapse:collapse;margin:.5em 0}"
        "td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}figure{display:inline-block;margin:4px}"
        "img{max-width:256px;image-rendering:pixelated;border:1px solid #ddd}.err{color:#b00}.note{background:#fff6d5;"
        "padding:.6em}</style></head><body><h1>hfvision demo</h1>",
        f"<p class='note'>{NOTICE}</p>",
    ]
    for s in sections:
        status = f"<span class='err'>FAILED: {html.escape(s.error)}</span>" if s.error else "ok"
        parts.append(f"<h2>{html.escape(s.title)}</h2><p>{status} &middot; {s.seconds:.2f} s</p>")
        for kind, value in s.items:
            if kind == "text":
                parts.append(f"<p>{html.escape(value)}</p>")
            elif kind == "table":
                caption, rows = value
                parts.append((f"<h4>{html.escape(caption)}</h4>" if caption else "") + _table(rows))
            elif kind == "image":
                path, caption = value
                rel = os.path.relpath(path, root)
                parts.append(
                    f"<figure><img src='{html.escape(rel)}'><figcaption>{html.escape(caption)}</figcaption></figure>"
                )
    parts.append("</body></html>")
    return "\n".join(parts)
