"""Helpers for the benchmarks that run hfvision's DreamBooth example scripts against diffusers' scripts of the same
names (``dreambooth_vs_diffusers.py``, ``flux_lora_vs_diffusers.py``); not a benchmark itself.

diffusers' scripts come from a diffusers checkout that is never part of this project: ``DIFFUSERS_EXAMPLES_DIR`` names
its ``examples/`` folder. Every run is a fresh process started through a small wrapper that records the process's peak
RSS and the moment of every optimizer step (a global `torch.optim` step hook, so neither script is modified), then
runs the script as ``__main__``.
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES_ENV = "DIFFUSERS_EXAMPLES_DIR"

# Runs a script as __main__; at exit writes {"rss_kib": peak RSS (KiB on Linux), "steps": [[wall, CPU] seconds at
# each optimizer step]} to the file named by argv[1].
_MEASURE = """
import atexit, json, resource, runpy, sys, time
from torch.optim.optimizer import register_optimizer_step_post_hook
out, script = sys.argv[1], sys.argv[2]
steps = []
register_optimizer_step_post_hook(lambda *_: steps.append((time.perf_counter(), time.process_time())))
atexit.register(lambda: open(out, "w").write(json.dumps(
    {"rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, "steps": steps})))
sys.argv = [script, *sys.argv[3:]]
runpy.run_path(script, run_name="__main__")
"""


@dataclass
class Run:
    """One training process: wall seconds, peak RSS in MB, and the median wall / CPU seconds between optimizer steps
    (CPU time is what the process itself spent, so it moves less than wall time on a shared machine)."""

    wall: float
    rss_mb: float
    step: float
    step_cpu: float
    cpu: float = float("nan")  # user + system seconds of the whole process


def examples_dir() -> Path | None:
    """The diffusers ``examples/`` folder named by ``DIFFUSERS_EXAMPLES_DIR``, or ``None`` after saying how to set it."""
    value = os.environ.get(EXAMPLES_ENV)
    if not value:
        print(f"skipped: set {EXAMPLES_ENV} to a diffusers checkout's examples/ folder to compare with its scripts")
        return None
    return Path(value)


def peer_script(examples: Path, name: str) -> Path:
    for candidate in (examples / "dreambooth" / name, examples / name):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"{EXAMPLES_ENV}={examples}: no dreambooth/{name} in it")


def peer_env(threads: int) -> dict[str, str]:
    """Environment of every run: ``threads`` OpenMP/MKL threads, offline Hub, this checkout's hfvision first."""
    return {
        **os.environ,
        "OMP_NUM_THREADS": str(threads),
        "MKL_NUM_THREADS": str(threads),
        "TOKENIZERS_PARALLELISM": "false",
        "HF_HUB_OFFLINE": "1",
        # no empty entry: it would put the current directory on both scripts' import path
        "PYTHONPATH": os.pathsep.join(p for p in [str(ROOT / "src"), os.environ.get("PYTHONPATH", "")] if p),
    }


def save_photos(folder: Path, size: int = 64) -> Path:
    """Four sample photos, ``size`` px square, as a DreamBooth instance folder."""
    from hfvision.testing import sample_image

    folder.mkdir(parents=True, exist_ok=True)
    for name in ("astronaut", "coffee", "rocket", "chelsea"):
        sample_image(name).resize((size, size)).save(folder / f"{name}.png")
    return folder


def run_once(script: Path, flags: list[str], out: Path, env: dict) -> Run:
    """Train once in a fresh process; step times are the median gaps between consecutive optimizer steps."""
    measure_file = out.with_suffix(".measure.json")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", _MEASURE, str(measure_file), str(script), *flags, "--output_dir", str(out)],
        env=env,
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if proc.returncode != 0:
        raise RuntimeError(f"{script} failed:\n{proc.stderr[-3000:]}")
    measured = json.loads(measure_file.read_text())
    steps = measured["steps"]
    return Run(
        wall, measured["rss_kib"] / 1024, _median_gap([t[0] for t in steps]), _median_gap([t[1] for t in steps]), cpu
    )


def _median_gap(times: list[float]) -> float:
    gaps = [b - a for a, b in zip(times, times[1:])]
    return statistics.median(gaps) if gaps else float("nan")


def interleaved(scripts: dict[str, Path], flags: list[str], rounds: int, workdir: Path, env: dict, tag: str):
    """``{name: [Run, ...]}``: every script once per round, the order alternating round by round."""
    results = {name: [] for name in scripts}
    for round_index in range(rounds):
        order = list(scripts) if round_index % 2 == 0 else list(scripts)[::-1]
        for name in order:
            results[name].append(run_once(scripts[name], flags, workdir / f"{tag}-{name}-{round_index}", env))
    return results


def median_run(runs: list[Run]) -> Run:
    fields = ((r.wall, r.rss_mb, r.step, r.step_cpu, r.cpu) for r in runs)
    return Run(*(statistics.median(values) for values in zip(*fields)))
