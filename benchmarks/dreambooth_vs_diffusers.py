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
import sys
import tempfile
from pathlib import Path

from _dreambooth_peer import ROOT, examples_dir, interleaved, median_run, peer_env, peer_script, save_photos

MODES = {"full": "train_dreambooth.py", "lora": "train_dreambooth_lora.py"}


def prepare(workdir: Path) -> tuple[Path, Path]:
    from hfvision.testing import save_tiny_sd

    model = workdir / "tiny-sd1"
    save_tiny_sd(model, "sd1")
    return model, save_photos(workdir / "photos")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=20, help="training steps per run")
    parser.add_argument("--rounds", type=int, default=6, help="interleaved rounds per mode")
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1, help="OMP/torch threads of each run")
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=list(MODES))
    args = parser.parse_args(argv)

    examples = examples_dir()
    if examples is None:
        return 0
    env = peer_env(args.threads)
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
                "diffusers": peer_script(examples, MODES[mode]),
            }
            results = interleaved(scripts, flags, args.rounds, workdir, env, mode)
            ours, peer = median_run(results["hfvision"]), median_run(results["diffusers"])
            print(
                f"| {mode} | {ours.wall:.1f} | {peer.wall:.1f} | {ours.wall / peer.wall:.2f} | {ours.cpu:.1f} "
                f"| {peer.cpu:.1f} | {ours.cpu / peer.cpu:.2f} | {ours.rss_mb:.0f} | {peer.rss_mb:.0f} "
                f"| {ours.rss_mb / peer.rss_mb:.2f} |"
            )
            for name in scripts:  # the spread says how far the medians can be trusted on a busy machine
                walls = sorted(run.wall for run in results[name])
                print(f"<!-- {mode} {name} wall s per run: {', '.join(f'{w:.1f}' for w in walls)} -->")
    return 0


if __name__ == "__main__":
    sys.exit(main())
