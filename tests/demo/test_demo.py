"""`hfvision demo` end to end: every step succeeds and the report links only to files it wrote."""

import json
import re
import subprocess
import sys

import pytest


def _run_demo(out, *only, flags=()):
    cmd = [sys.executable, "-m", "hfvision.cli.main", "demo", "--output", str(out), *flags]
    if only:
        cmd += ["--only", *only]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=1800)


def _check_report(out):
    summary = json.loads((out / "summary.json").read_text())
    assert summary and [s for s in summary if s["error"]] == []
    html = (out / "report.html").read_text()
    assert "tiny and randomly initialised" in html
    for src in re.findall(r"<img src='([^']+)'", html):
        assert (out / src).is_file(), src
    return summary, html


def test_demo_foundation_step_refuses_an_existing_output_unless_overwrite(tmp_path):
    """The foundation step's report; an earlier run's folder is kept byte for byte (one error line, exit 1, before
    anything is built), and with --overwrite it is replaced as a whole (no stale file survives)."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "report.html").write_text("an earlier report")
    (out / "stale.png").write_bytes(b"old")
    proc = _run_demo(out, "foundation")
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr.strip() == (
        f"hfvision demo: error: --output {out} exists and is not empty; choose another folder or add --overwrite"
    )
    assert sorted(p.name for p in out.iterdir()) == ["report.html", "stale.png"]
    assert (out / "report.html").read_text() == "an earlier report"
    proc = _run_demo(out, "foundation", flags=["--overwrite"])
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary, html = _check_report(out)
    assert len(summary) == 1 and "weights identical = True" in html and not (out / "stale.png").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # no temporary folder left beside it


@pytest.mark.slow
def test_full_demo(tmp_path):
    proc = _run_demo(tmp_path / "out")
    assert proc.returncode == 0, proc.stderr[-4000:]
    summary, _ = _check_report(tmp_path / "out")
    assert len(summary) >= 8
