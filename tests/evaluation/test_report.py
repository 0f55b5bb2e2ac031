"""The run report: report.html rendered in a real Chromium (grid images decoded with the right pixels, metric and
loss curves drawn from the numbers, text escaped, nothing external), and the grids as TensorBoard images."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hfvision.evaluation import append_metrics, log_grids_to_tensorboard, validation_grid, write_report
from hfvision.evaluation.report import write_run_report

STEPS, PROMPTS = (100, 200, 300), ['<script>alert("x")</script> & {token} dog', "a photo of sks dog"]
METRICS = {
    100: {"clip_i": 0.61, "dino": 0.42, "clip_t": 0.31, "drift": 0.05, "loss": 0.30},
    200: {"clip_i": 0.74, "dino": 0.66, "clip_t": 0.29, "drift": 0.11, "loss": 0.21},
    300: {"clip_i": 0.79, "dino": 0.58, "clip_t": 0.22, "drift": 0.27, "loss": 0.18},
}


def color(step: int, prompt: int, image: int) -> tuple[int, int, int]:
    return (step // 100 * 60, 40 + 90 * prompt, 30 + 120 * image)


def images_by_step() -> dict:
    return {
        s: [[Image.new("RGB", (64, 48), color(s, p, i)) for i in range(2)] for p in range(len(PROMPTS))] for s in STEPS
    }


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A run folder as the trainer leaves it: samples/step-N/{p}-{i}.png + prompts.txt, metrics.jsonl, loss.jsonl."""
    out = tmp_path_factory.mktemp("run")
    for step, rows in images_by_step().items():
        folder = out / "samples" / f"step-{step:06d}"  # as the trainer names them
        folder.mkdir(parents=True)
        (folder / "prompts.txt").write_text("\n".join(PROMPTS) + "\n")
        for p, row in enumerate(rows):
            for i, image in enumerate(row):
                image.save(folder / f"{p}-{i}.png")
        append_metrics(out / "metrics.jsonl", step, METRICS[step])
    (out / "loss.jsonl").write_text("".join(json.dumps({"step": s, "loss": 1 / s}) + "\n" for s in range(1, 301)))
    return out


def test_report_html_is_self_contained_and_escaped(run_dir):
    path = write_run_report(run_dir, best_by="dino")
    assert path == run_dir / "report.html"
    text = path.read_text()
    assert "<script" not in text and "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; {token} dog" in text
    assert not re.search(r"""(src|href)=["'](?!data:)""", text)  # every image inline, no external resource
    assert text.count('<img src="data:image/png;base64,') == len(STEPS) * len(PROMPTS) * 2
    assert "kept step <b id='best-step'>200</b>" in text
    with pytest.raises(ValueError, match="step 1 has images for 1 prompts, expected 2"):
        write_report(run_dir / "x.html", prompts=PROMPTS, images_by_step={1: [[Image.new("RGB", (8, 8))]]})


@pytest.mark.browser
def test_report_renders_in_a_real_browser(run_dir, browser, tmp_path):
    path = write_run_report(run_dir, best_by="dino")
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    dialogs = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.goto(path.as_uri())
    page.wait_for_load_state("load")

    # the grid: prompts x steps cells, every image decoded with the pixels of its (step, prompt, image)
    grid = page.evaluate("""() => [...document.querySelectorAll('#grid img')].map(img => {
        const c = document.createElement('canvas'); c.width = img.naturalWidth; c.height = img.naturalHeight;
        const ctx = c.getContext('2d'); ctx.drawImage(img, 0, 0);
        return {step: +img.dataset.step, prompt: +img.dataset.prompt, complete: img.complete,
                w: img.naturalWidth, h: img.naturalHeight, rgb: [...ctx.getImageData(32, 24, 1, 1).data.slice(0, 3)]};
    })""")
    assert len(grid) == len(STEPS) * len(PROMPTS) * 2
    seen = {}
    for cell in grid:
        assert cell["complete"] and (cell["w"], cell["h"]) == (64, 48)
        i = seen.setdefault((cell["step"], cell["prompt"]), -1) + 1
        seen[(cell["step"], cell["prompt"])] = i
        assert tuple(cell["rgb"]) == color(cell["step"], cell["prompt"], i)
    assert page.locator("#grid th").all_inner_texts()[:4] == ["prompt", "step 100", "step 200", "step 300"]
    assert page.locator("th.prompt").first.inner_text() == PROMPTS[0]  # shown as text, never run
    assert dialogs == [] and page.evaluate("document.scripts.length") == 0

    # curves: one polyline per metric with a point per step, higher values drawn higher; loss has 300 points
    charts = page.locator("svg.chart")
    assert charts.count() == 3
    dino_y = page.evaluate("""() => document.querySelector('polyline[data-series="DINO"]').getAttribute('points')
                              .split(' ').map(p => +p.split(',')[1])""")
    assert (
        len(dino_y) == 3 and np.argsort(dino_y).tolist() == np.argsort([-METRICS[s]["dino"] for s in STEPS]).tolist()
    )
    loss_points = page.evaluate("document.querySelector('polyline[data-series=\"loss\"]').getAttribute('points')")
    assert len(loss_points.split()) == 300
    assert page.locator("line.best").count() == 2  # best-step marker on both metric charts
    assert page.locator("#metrics tr.best td").first.inner_text() == "200"
    assert page.locator("#best-step").inner_text() == "200"
    box = charts.first.bounding_box()
    assert box["width"] > 400 and box["height"] > 200  # actually laid out, not collapsed
    shots = Path(os.environ.get("HFVISION_SCREENSHOTS") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(shots / "report.png"), full_page=True)
    page.close()


def test_grids_as_tensorboard_images(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    images = images_by_step()
    log_grids_to_tensorboard(tmp_path / "logs", images, PROMPTS)
    acc = EventAccumulator(str(tmp_path / "logs"), size_guidance={"images": 0, "tensors": 0})
    acc.Reload()
    assert acc.Tags()["images"] == ["validation/grid"]
    events = acc.Images("validation/grid")
    assert [e.step for e in events] == list(STEPS)
    for event in events:
        assert (event.width, event.height) == (2 * 64, len(PROMPTS) * 48)
        logged = np.asarray(Image.open(__import__("io").BytesIO(event.encoded_image_string)).convert("RGB"))
        np.testing.assert_array_equal(logged, np.asarray(validation_grid({event.step: images[event.step]})))
        assert tuple(logged[48 + 10, 64 + 10]) == color(event.step, 1, 1)  # row = prompt, column = image


def test_loss_curve_from_tensorboard_events(run_dir, tmp_path):
    """Without loss.jsonl the report reads the trainer's TensorBoard scalars (a resumed run's re-logged steps win)."""
    import shutil

    from torch.utils.tensorboard import SummaryWriter

    from hfvision.evaluation import read_tensorboard_scalars

    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    (run / "loss.jsonl").unlink()
    for values in ({1: 0.9, 2: 0.8, 3: 0.7}, {3: 0.5, 4: 0.4}):  # the second writer: resumed from step 2
        writer = SummaryWriter(str(run / "logs" / "dreambooth"))
        for step, value in values.items():
            writer.add_scalar("loss", value, step)
        writer.close()
    scalars = read_tensorboard_scalars(run / "logs")
    assert [s for s, _ in scalars] == [1, 2, 3, 4]
    assert [v for _, v in scalars] == pytest.approx([0.9, 0.8, 0.5, 0.4])
    text = write_run_report(run).read_text()
    points = re.search(r'<polyline data-series="loss" points="([^"]+)"', text).group(1).split()
    assert len(points) == 4
    (run / "logs").rename(run / "no-logs")  # neither: the loss stored beside the metrics
    text = write_run_report(run).read_text()
    assert len(re.search(r'<polyline data-series="loss" points="([^"]+)"', text).group(1).split()) == len(STEPS)
    with pytest.raises(FileNotFoundError, match="holds no step-N folders"):
        write_run_report(run, samples_dir=tmp_path / "empty")


def test_eval_report_cli(run_dir, tmp_path, capsys):
    import shutil

    from hfvision.cli.main import main

    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    assert main(["eval", "report", str(run), "--best-by", "clip_t"]) == 0
    assert capsys.readouterr().out.strip() == f"wrote {run / 'report.html'}"
    assert "kept step <b id='best-step'>100</b> (best clip_t)" in (run / "report.html").read_text()
    assert main(["eval", "report", str(run), "--best_by", "fid"]) == 2
    assert "--best-by 'fid' is not one of clip_i, dino, clip_t, drift" in capsys.readouterr().err


def test_metrics_markdown_for_the_model_card():
    from hfvision.evaluation import metrics_markdown

    text = metrics_markdown(METRICS, best_step=200, best_by="dino")
    lines = text.splitlines()
    assert lines[:4] == [
        "## Quality",
        "",
        "| step | CLIP-I | DINO | CLIP-T | prior drift |",
        "|---:|---:|---:|---:|---:|",
    ]
    assert lines[4] == "| 100 | 0.6100 | 0.4200 | 0.3100 | 0.0500 |"
    assert lines[5] == "| **200** | **0.7400** | **0.6600** | **0.2900** | **0.1100** |"
    assert lines[-1].startswith("Kept step 200 (best DINO).")
    assert metrics_markdown({}) == ""
