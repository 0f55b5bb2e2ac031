"""`hfvision demo` end to end: every step succeeds and the report links only to files it wrote."""

import json
import re
import subprocess
import sys

import pytest


def _run_demo(out, *only):
    cmd = [sys.executable, "-m", "hfvision.cli.main", "demo", "--output", str(out)]
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


def test_demo_foundation_step(tmp_path):
    proc = _run_demo(tmp_path / "out", "foundation")
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary, html = _check_report(tmp_path / "out")
    assert len(summary) == 1 and "weights identical = True" in html


@pytest.mark.slow
def test_full_demo(tmp_path):
    proc = _run_demo(tmp_path / "out")
    assert proc.returncode == 0, proc.stderr[-4000:]
    summary, _ = _check_report(tmp_path / "out")
    assert len(summary) >= 8
