"""The run's ``report.html`` (validation grid, metric curves, loss curve) and the same grids as TensorBoard images.

The report is one self-contained file: images are inline PNG data URIs, charts inline SVG, every piece of text
HTML-escaped; it opens from disk, offline, in any browser. Only PIL is needed (no plotting library).

Run-folder layout read by [`write_run_report`] (what the DreamBooth trainer writes):
``samples/step-{N}/{prompt}-{image}.png`` + ``prompts.txt``, ``metrics.jsonl`` (one record per validation step,
optionally with ``loss``), and optionally ``loss.jsonl`` (``{"step", "loss"}`` per logged step).
"""

from __future__ import annotations

import base64
import html
import io
import json
import os
import re
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path

from ..utils.io import atomic_write
from ..utils.logging import get_logger

logger = get_logger(__name__)

REPORT_NAME = "report.html"
_COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf")
_METRIC_LABELS = {"clip_i": "CLIP-I", "dino": "DINO", "clip_t": "CLIP-T", "drift": "prior drift (lower is better)"}


# --- grids ----------------------------------------------------------------------------------------------------


def validation_grid(images_by_step: Mapping[int, Sequence[Sequence]], thumb: int | None = None):
    """One PIL image: a row per prompt, a column per (step, image); ``images_by_step[step][prompt][i]``.

    Args:
        images_by_step (`dict[int, list[list[PIL.Image.Image]]]`): validation images per step, per prompt.
        thumb (`int`, *optional*): resize every tile to ``thumb`` px on its longer side.
    """
    from PIL import Image

    steps = sorted(images_by_step)
    rows = len(images_by_step[steps[0]])
    per_step = max(len(row) for s in steps for row in images_by_step[s])
    first = images_by_step[steps[0]][0][0]
    w, h = first.size
    if thumb:
        scale = thumb / max(w, h)
        w, h = max(1, round(w * scale)), max(1, round(h * scale))
    grid = Image.new("RGB", (len(steps) * per_step * w, rows * h), "white")
    for c, step in enumerate(steps):
        for r, row in enumerate(images_by_step[step]):
            for i, image in enumerate(row):
                tile = image.convert("RGB")
                if tile.size != (w, h):
                    tile = tile.resize((w, h))
                grid.paste(tile, ((c * per_step + i) * w, r * h))
    return grid


def log_grids_to_tensorboard(
    writer,
    images_by_step: Mapping[int, Sequence[Sequence]],
    prompts: Sequence[str] | None = None,
    tag: str = "validation",
) -> None:
    """Log each step's prompts x images grid as the TensorBoard image ``{tag}/grid`` at that step.

    Args:
        writer (`torch.utils.tensorboard.SummaryWriter` or `str`): a writer (e.g. accelerate's tensorboard
            tracker's ``.writer``) or a log folder to open one in.
        images_by_step (`dict[int, list[list[PIL.Image.Image]]]`): validation images per step, per prompt.
        prompts (`list[str]`, *optional*): logged once as the text ``{tag}/prompts`` (row order of the grid).
    """
    import numpy as np

    own = isinstance(writer, (str, os.PathLike))
    if own:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(writer))
    try:
        steps = sorted(images_by_step)
        for step in steps:
            grid = validation_grid({step: images_by_step[step]})
            writer.add_image(f"{tag}/grid", np.asarray(grid), step, dataformats="HWC")
        if prompts:
            writer.add_text(f"{tag}/prompts", "\n".join(f"{i}. {p}" for i, p in enumerate(prompts)), steps[0])
        writer.flush()
    finally:
        if own:
            writer.close()


# --- inline SVG charts ----------------------------------------------------------------------------------------


def _fmt(value: float) -> str:
    return f"{value:.4g}"


def svg_line_chart(
    series: Mapping[str, Sequence[tuple[float, float]]],
    title: str,
    width: int = 520,
    height: int = 240,
    marker_x: float | None = None,
) -> str:
    """An inline ``<svg>`` line chart: one polyline per series with a hover ``<title>`` per point.

    ``marker_x`` draws a dashed vertical line (the selected best step).
    """
    points = [(x, y) for s in series.values() for x, y in s]
    left, right, top, bottom = 56, 12, 28, 32
    plot_w, plot_h = width - left - right, height - top - bottom
    esc = html.escape
    parts = [
        f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{esc(title)}">',
        f'<text x="{left}" y="16" font-size="13" font-weight="bold">{esc(title)}</text>',
    ]
    if not points:
        parts.append(f'<text x="{left}" y="{top + plot_h / 2}" font-size="12">no data</text></svg>')
        return "".join(parts)
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    x0, x1 = min(xs), max(xs)
    y0, y1 = min(ys), max(ys)
    if x1 == x0:
        x0, x1 = x0 - 1, x1 + 1
    if y1 == y0:
        y0, y1 = y0 - 0.5, y1 + 0.5
    pad = (y1 - y0) * 0.05
    y0, y1 = y0 - pad, y1 + pad

    def sx(x: float) -> float:
        return left + (x - x0) / (x1 - x0) * plot_w

    def sy(y: float) -> float:
        return top + (1 - (y - y0) / (y1 - y0)) * plot_h

    parts.append(f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#999"/>')
    for value, anchor in ((y1, top + 4), (y0, top + plot_h)):
        parts.append(f'<text x="{left - 4}" y="{anchor}" font-size="10" text-anchor="end">{_fmt(value)}</text>')
    for value, anchor in ((x0, "start"), (x1, "end")):
        parts.append(
            f'<text x="{sx(value):.1f}" y="{height - 16}" font-size="10" text-anchor="{anchor}">{_fmt(value)}</text>'
        )
    parts.append(f'<text x="{left + plot_w / 2}" y="{height - 2}" font-size="10" text-anchor="middle">step</text>')
    if marker_x is not None:
        parts.append(
            f'<line class="best" x1="{sx(marker_x):.1f}" x2="{sx(marker_x):.1f}" y1="{top}" '
            f'y2="{top + plot_h}" stroke="#555" stroke-dasharray="4 3"/>'
        )
    for k, (name, data) in enumerate(series.items()):
        color = _COLORS[k % len(_COLORS)]
        coords = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in data)
        parts.append(
            f'<polyline data-series="{esc(name)}" points="{coords}" fill="none" stroke="{color}" stroke-width="1.5"/>'
        )
        if len(data) <= 200:  # markers with exact values on hover; long loss curves stay a plain line
            parts += [
                f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="2.5" fill="{color}"><title>{esc(name)} '
                f"step {_fmt(x)}: {y:.4f}</title></circle>"
                for x, y in data
            ]
        parts.append(f'<text x="{left + 6 + 110 * k}" y="{top + 14}" font-size="11" fill="{color}">{esc(name)}</text>')
    parts.append("</svg>")
    return "".join(parts)


# --- the report -----------------------------------------------------------------------------------------------


def _data_uri(image, thumb: int) -> str:
    image = image.convert("RGB")
    if max(image.size) > thumb:
        image = image.copy()
        image.thumbnail((thumb, thumb))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


_STYLE = """
body{font-family:system-ui,sans-serif;margin:24px;color:#222}
table{border-collapse:collapse}td,th{border:1px solid #ddd;padding:4px;vertical-align:top}
th.prompt{text-align:left;max-width:260px;font-weight:normal}
td img{display:block;margin:2px}td.cell{white-space:nowrap}td.cell img{display:inline-block}
.best{background:#fff4cc}.charts{display:flex;flex-wrap:wrap;gap:16px}
"""


def write_report(
    path: str | os.PathLike,
    *,
    prompts: Sequence[str],
    images_by_step: Mapping[int, Sequence[Sequence]],
    metrics_by_step: Mapping[int, Mapping[str, float]] | None = None,
    losses: Sequence[tuple[int, float]] | None = None,
    best_step: int | None = None,
    best_by: str | None = None,
    title: str = "DreamBooth run",
    thumb: int = 256,
) -> Path:
    """Write a self-contained HTML report: validation grid (prompts x steps), metric curves, loss curve.

    Args:
        path (`str` or `os.PathLike`): the file to write (a folder means ``folder/report.html``); written atomically.
        prompts (`list[str]`): validation prompts (grid rows).
        images_by_step (`dict[int, list[list[PIL.Image.Image]]]`): per step, per prompt, the validation images.
        metrics_by_step (`dict[int, dict]`, *optional*): e.g. [`read_metrics`]'s result; one curve per metric.
        losses (`list[tuple[int, float]]`, *optional*): (step, training loss) pairs.
        best_step (`int`, *optional*), best_by (`str`, *optional*): the kept step (highlighted) and its metric.
        title (`str`): page title.
        thumb (`int`, defaults to 256): longest side of the embedded images.

    Returns:
        `Path`: the report file.
    """
    path = Path(path)
    if path.is_dir():
        path = path / REPORT_NAME
    esc = html.escape
    steps = sorted(images_by_step)
    metrics_by_step = metrics_by_step or {}
    for step in steps:
        if len(images_by_step[step]) != len(prompts):
            raise ValueError(
                f"step {step} has images for {len(images_by_step[step])} prompts, expected {len(prompts)}"
            )
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{esc(title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{esc(title)}</h1>",
        f'<p class="meta">generated {datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")} by hfvision'
        + (
            f"; kept step <b id='best-step'>{best_step}</b> (best {esc(best_by or '')})"
            if best_step is not None
            else ""
        )
        + "</p>",
    ]

    # Metric table
    names = [m for m in _METRIC_LABELS if any(m in metrics_by_step.get(s, {}) for s in metrics_by_step)]
    if names:
        out.append(
            '<h2>Metrics</h2><table id="metrics"><tr><th>step</th>'
            + "".join(f"<th>{esc(_METRIC_LABELS[m])}</th>" for m in names)
            + "</tr>"
        )
        for step in sorted(metrics_by_step):
            cls = ' class="best"' if step == best_step else ""
            cells = "".join(
                f"<td>{metrics_by_step[step][m]:.4f}</td>" if m in metrics_by_step[step] else "<td></td>"
                for m in names
            )
            out.append(f"<tr{cls}><td>{step}</td>{cells}</tr>")
        out.append("</table>")

    # Curves
    out.append('<h2>Curves</h2><div class="charts">')
    higher = {
        m: [(s, float(metrics_by_step[s][m])) for s in sorted(metrics_by_step) if m in metrics_by_step[s]]
        for m in names
        if m != "drift"
    }
    if higher:
        out.append(
            svg_line_chart(
                {_METRIC_LABELS[m]: v for m, v in higher.items()}, "subject and prompt fidelity", marker_x=best_step
            )
        )
    if "drift" in names:
        drift = [
            (s, float(metrics_by_step[s]["drift"])) for s in sorted(metrics_by_step) if "drift" in metrics_by_step[s]
        ]
        out.append(svg_line_chart({_METRIC_LABELS["drift"]: drift}, "prior drift", marker_x=best_step))
    if losses:
        out.append(svg_line_chart({"loss": [(float(s), float(v)) for s, v in losses]}, "training loss"))
    out.append("</div>")

    # Validation grid: a row per prompt, a column per step
    out.append('<h2>Validation images</h2><table id="grid"><tr><th>prompt</th>')
    best_attr = ' class="best"'
    out += [f"<th{best_attr if s == best_step else ''}>step {s}</th>" for s in steps]
    out.append("</tr>")
    for p, prompt in enumerate(prompts):
        out.append(f'<tr><th class="prompt">{esc(prompt)}</th>')
        for step in steps:
            imgs = "".join(
                f'<img src="{_data_uri(img, thumb)}" alt="{esc(prompt)} (step {step}, image {i})" '
                f'data-step="{step}" data-prompt="{p}">'
                for i, img in enumerate(images_by_step[step][p])
            )
            out.append(f'<td class="cell{" best" if step == best_step else ""}">{imgs}</td>')
        out.append("</tr>")
    out.append("</table></body></html>")
    with atomic_write(path, "w") as f:
        f.write("\n".join(out))
    return path


# --- model card ------------------------------------------------------------------------------------------------


def metrics_markdown(
    metrics_by_step: Mapping[int, Mapping[str, float]], best_step: int | None = None, best_by: str | None = None
) -> str:
    """A model-card section: the quality table per validation step (Markdown), the kept step in bold.

    >>> section = metrics_markdown(read_metrics("out/metrics.jsonl"), best_step=400, best_by="dino")  # doctest: +SKIP
    """
    names = [m for m in _METRIC_LABELS if any(m in r for r in metrics_by_step.values())]
    if not names:
        return ""
    short = {**_METRIC_LABELS, "drift": "prior drift"}
    lines = [
        "## Quality",
        "",
        "| step | " + " | ".join(short[m] for m in names) + " |",
        "|---:|" + "---:|" * len(names),
    ]
    for step in sorted(metrics_by_step):
        cells = [str(step)] + [f"{metrics_by_step[step][m]:.4f}" if m in metrics_by_step[step] else "" for m in names]
        if step == best_step:
            cells = [f"**{c}**" if c else c for c in cells]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    kept = f"Kept step {best_step} (best {short.get(best_by, best_by)}). " if best_step is not None else ""
    lines.append(
        kept + "CLIP-I / DINO: subject fidelity; CLIP-T: prompt fidelity; prior drift: change of "
        "class images from the base model (lower is better)."
    )
    return "\n".join(lines)


# --- from a run folder ----------------------------------------------------------------------------------------


def read_samples(samples_dir: str | os.PathLike) -> tuple[list[str], dict[int, list[list]]]:
    """``(prompts, images_by_step)`` from ``samples/step-{N}/{p}-{i}.png`` (+ ``prompts.txt``) folders."""
    from PIL import Image

    images_by_step: dict[int, list[list]] = {}
    prompts: list[str] = []
    for folder in sorted(Path(samples_dir).glob("step-*")):
        match = re.fullmatch(r"step-(\d+)", folder.name)
        if not match or not folder.is_dir():
            continue
        step_prompts = (folder / "prompts.txt").read_text(encoding="utf-8").splitlines()
        prompts = prompts or step_prompts
        rows: list[list] = [[] for _ in step_prompts]
        files = [
            (tuple(map(int, m.groups())), f)
            for f in folder.glob("*.png")
            if (m := re.fullmatch(r"(\d+)-(\d+)\.png", f.name))
        ]
        for (p, _), file in sorted(files):
            with Image.open(file) as image:
                rows[p].append(image.convert("RGB"))
        images_by_step[int(match.group(1))] = rows
    return prompts, images_by_step


def read_tensorboard_scalars(logdir: str | os.PathLike, tag: str = "loss") -> list[tuple[int, float]]:
    """``(step, value)`` of scalar ``tag`` from every TensorBoard event file under ``logdir`` (a later value for the
    same step wins: a resumed run logs its steps again). Empty without tensorboard or without events."""
    try:
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    except ImportError:
        return []
    values: dict[int, tuple[float, float]] = {}
    folders = sorted({p.parent for p in Path(logdir).rglob("events.out.tfevents.*")})
    for folder in folders:
        acc = EventAccumulator(str(folder), size_guidance={"scalars": 0})
        acc.Reload()
        if tag in acc.Tags().get("scalars", []):
            for event in acc.Scalars(tag):
                if event.step not in values or event.wall_time >= values[event.step][0]:
                    values[event.step] = (event.wall_time, event.value)
    return [(step, value) for step, (_, value) in sorted(values.items())]


def write_run_report(
    output_dir: str | os.PathLike,
    best_by: str | None = None,
    title: str | None = None,
    samples_dir: str | os.PathLike | None = None,
    logging_dir: str = "logs",
) -> Path:
    """``output_dir/report.html`` from what a run left there.

    Reads the validation samples (``samples_dir``, default ``output_dir/samples``), ``metrics.jsonl``, and the loss
    curve from ``loss.jsonl`` if present, else from the TensorBoard events under ``output_dir/logging_dir``, else
    from the ``loss`` stored beside the metrics.
    """
    from .dreambooth import METRICS_FILE, read_metrics, select_best

    output_dir = Path(output_dir)
    samples_dir = Path(samples_dir) if samples_dir is not None else output_dir / "samples"
    prompts, images_by_step = read_samples(samples_dir)
    if not images_by_step:
        raise FileNotFoundError(f"{samples_dir} holds no step-N folders; nothing to report")
    metrics = read_metrics(output_dir / METRICS_FILE) if (output_dir / METRICS_FILE).is_file() else {}
    if (output_dir / "loss.jsonl").is_file():
        lines = (output_dir / "loss.jsonl").read_text(encoding="utf-8").splitlines()
        losses = [(r["step"], r["loss"]) for r in map(json.loads, filter(str.strip, lines))]
    else:
        losses = read_tensorboard_scalars(output_dir / logging_dir, "loss")
        losses = losses or [(s, m["loss"]) for s, m in sorted(metrics.items()) if "loss" in m]
    best = select_best(metrics, best_by) if best_by and metrics else None
    return write_report(
        output_dir / REPORT_NAME,
        prompts=prompts,
        images_by_step=images_by_step,
        metrics_by_step=metrics,
        losses=losses,
        best_step=best,
        best_by=best_by,
        title=title or f"DreamBooth run: {output_dir.name}",
    )
