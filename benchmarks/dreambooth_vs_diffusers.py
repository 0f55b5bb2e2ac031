#!/usr/bin/env python
"""hfvision's DreamBooth scripts vs diffusers' scripts of the same names: wall time and peak RSS of whole runs.

Both scripts run as fresh processes on the same tiny random SD 1.x model, photos and flags (full fine-tune with
``train_dreambooth.py``, LoRA with ``train_dreambooth_lora.py``), interleaved round by round (the order alternates),
and the medians are compared: a ratio below 1.0 means hfvision is faster / smaller. Wall time covers everything a
user waits for (imports, loading, training, saving). CPU time (user + system of the process) is reported beside it: on
a shared machine wall time mostly measures the other jobs, CPU time the work each script does.

diffusers' scripts come from a diffusers checkout that is never part of this project: set ``DIFFUSERS_EXAMPLES_DIR``
to its ``examples/`` folder (the one holding ``dreambooth/train_dreambooth.py``). Without it the benchmark says so
and exits.

    DIFFUSERS_EXAMPLES_DIR=~/src/diffusers/examples python benchmarks/dreambooth_vs_diffusers.py --steps 20
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODES = {"full": "train_dreambooth.py", "lora": "train_dreambooth_lora.py"}

# Runs a script as __main__ and writes the process's peak RSS (KiB on Linux) to the file named by argv[1].
_MEASURE = """
import atexit, resource, runpy, sys
out, script = sys.argv[1], sys.argv[2]
atexit.register(lambda: open(out, "w").write(str(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)))
sys.argv = [script, *sys.argv[3:]]
runpy.run_path(script, run_name="__main__")
"""


def peer_script(examples_dir: Path, name: str) -> Path:
    for candidate in (examples_dir / "dreambooth" / name, examples_dir / name):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"DIFFUSERS_EXAMPLES_DIR={examples_dir}: no dreambooth/{name} in it")


def prepare(workdir: Path) -> tuple[Path, Path]:
    from hfvision.testing import sample_image, save_tiny_sd

    model, photos = workdir / "tiny-sd1", workdir / "photos"
    save_tiny_sd(model, "sd1")
    photos.mkdir()
    for name in ("astronaut", "coffee", "rocket", "chelsea"):
        sample_image(name).resize((64, 64)).save(photos / f"{name}.png")
    return model, photos


def run_once(script: Path, flags: list[str], out: Path, env: dict) -> tuple[float, float, float]:
    """(wall seconds, CPU seconds, peak RSS in MB) of one training process."""
    rss_file = out.with_suffix(".rss")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", _MEASURE, str(rss_file), str(script), *flags, "--output_dir", str(out)],
        env=env,
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise RuntimeError(f"{script} failed:\n{proc.stderr[-3000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, int(rss_file.read_text()) / 1024


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=20, help="training steps per run")
    parser.add_argument("--rounds", type=int, default=6, help="interleaved rounds per mode")
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1, help="OMP/torch threads of each run")
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=list(MODES))
    args = parser.parse_args(argv)

    examples_dir = os.environ.get("DIFFUSERS_EXAMPLES_DIR")
    if not examples_dir:
        print(
            "skipped: set DIFFUSERS_EXAMPLES_DIR to a diffusers checkout's examples/ folder to compare with its scripts"
        )
        return 0
    env = {
        **os.environ,
        "OMP_NUM_THREADS": str(args.threads),
        "MKL_NUM_THREADS": str(args.threads),
        "TOKENIZERS_PARALLELISM": "false",
        "HF_HUB_OFFLINE": "1",
        # no empty entry: it would put the current directory on both scripts' import path
        "PYTHONPATH": os.pathsep.join(p for p in [str(ROOT / "src"), os.environ.get("PYTHONPATH", "")] if p),
    }
    with tempfile.TemporaryDirectory(prefix="db-vs-diffusers-") as tmp:
        workdir = Path(tmp)
        model, photos = prepare(workdir)
        flags = [
            "--pretrained_model_name_or_path",
            str(model),
            "--instance_data_dir",
            str(photos),
            "--instance_prompt",
            "a photo of sks person",
            "--resolution",
            str(args.resolution),
            "--train_batch_size",
            "1",
            "--max_train_steps",
            str(args.steps),
            "--learning_rate",
            "1e-4",
            "--checkpointing_steps",
            str(10 * args.steps),
            "--seed",
            "0",
            "--report_to",
            "tensorboard",
        ]
        print(
            f"{args.steps} steps at {args.resolution} px, {args.threads} thread(s), {args.rounds} interleaved rounds"
        )
        print(
            "| mode | hfvision s | diffusers s | time ratio | hfvision CPU s | diffusers CPU s | CPU ratio "
            "| hfvision peak RSS MB | diffusers MB | RSS ratio |"
        )
        print("|---|---|---|---|---|---|---|---|---|---|")
        for mode in args.modes:
            scripts = {
                "hfvision": ROOT / "examples" / MODES[mode],
                "diffusers": peer_script(Path(examples_dir), MODES[mode]),
            }
            results = {name: [] for name in scripts}
            for round_index in range(args.rounds):
                order = list(scripts) if round_index % 2 == 0 else list(scripts)[::-1]
                for name in order:
                    out = workdir / f"{mode}-{name}-{round_index}"
                    results[name].append(run_once(scripts[name], flags, out, env))
            ours = [statistics.median(v) for v in zip(*results["hfvision"])]
            peer = [statistics.median(v) for v in zip(*results["diffusers"])]
            print(
                f"| {mode} | {ours[0]:.1f} | {peer[0]:.1f} | {ours[0] / peer[0]:.2f} | {ours[1]:.1f} | {peer[1]:.1f} "
                f"| {ours[1] / peer[1]:.2f} | {ours[2]:.0f} | {peer[2]:.0f} | {ours[2] / peer[2]:.2f} |"
            )
            for name in scripts:  # the spread says how far the medians can be trusted on a busy machine
                walls = sorted(w for w, _, _ in results[name])
                print(f"<!-- {mode} {name} wall s per run: {', '.join(f'{w:.1f}' for w in walls)} -->")
    return 0


if __name__ == "__main__":
    sys.exit(main())
