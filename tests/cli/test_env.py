import importlib.metadata as md
import json
import subprocess
import sys


def test_hfvision_env_reports_the_installed_stack():
    out = subprocess.run(
        [sys.executable, "-m", "hfvision.cli.main", "env", "--json"], capture_output=True, text=True, check=True
    ).stdout
    report = json.loads(out)
    for dist in ("torch", "transformers", "diffusers", "huggingface_hub", "timm", "optimum"):
        assert report["versions"][dist] == md.version(dist)
    assert report["devices"]["cpu_threads"] >= 1
    assert report["extras"]["ui"]["gradio"] is True and report["extras"]["serve"]["fastapi"] is True


def test_hfvision_help_lists_env():
    out = subprocess.run([sys.executable, "-m", "hfvision.cli.main", "--help"], capture_output=True, text=True).stdout
    assert "env" in out
