#!/usr/bin/env python
"""Flux.1 DreamBooth LoRA: hfvision's ``examples/train_dreambooth_lora_flux.py`` vs diffusers' script of the same name.

Both scripts run as fresh processes on the same tiny random Flux.1-dev model (`hfvision.testing.save_tiny_flux`),
photos and flags, interleaved round by round (the order alternates), and the medians are compared: a ratio below 1.0
means hfvision is faster / smaller. Step time is the median gap between optimizer steps (start-up, loading and saving
excluded), in wall and in process CPU seconds; wall time is the whole run; peak RSS is the training process's.

diffusers' script comes from a diffusers checkout that is never part of this project: set ``DIFFUSERS_EXAMPLES_DIR``
to its ``examples/`` folder (the one holding ``dreambooth/train_dreambooth_lora_flux.py``). Without it the benchmark
says so and exits.

    DIFFUSERS_EXAMPLES_DIR=~/src/diffusers/examples python benchmarks/flux_lora_vs_diffusers.py --steps 20
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from _dreambooth_peer import ROOT, examples_dir, interleaved, median_run, peer_env, peer_script, save_photos

SCRIPT = "train_dreambooth_lora_flux.py"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=20, help="training steps per run")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds")
    parser.add_argument("--resolutions", type=int, nargs="+", default=[64, 128], help="training resolutions (px)")
    parser.add_argument("--rank", type=int, default=4)
    parser.add_argument("--max_sequence_length", type=int, default=512, help="T5 tokens (both scripts' default)")
    parser.add_argument("--threads", type=int, default=1, help="OMP/torch threads of each run")
    args = parser.parse_args(argv)

    examples = examples_dir()
    if examples is None:
        return 0
    scripts = {"hfvision": ROOT / "examples" / SCRIPT, "diffusers": peer_script(examples, SCRIPT)}
    env = peer_env(args.threads)
    with tempfile.TemporaryDirectory(prefix="flux-lora-vs-diffusers-") as tmp:
        from hfvision.testing import save_tiny_flux

        workdir = Path(tmp)
        model = save_tiny_flux(workdir / "tiny-flux-dev", "dev")
        photos = save_photos(workdir / "photos", max(args.resolutions))
        print(f"{args.steps} steps, rank {args.rank}, {args.threads} thread(s), {args.rounds} interleaved rounds")
        print(
            "| px | hfvision s/step | diffusers s/step | step ratio | CPU s/step ratio | hfvision wall s "
            "| diffusers wall s | wall ratio | hfvision peak RSS MB | diffusers MB | RSS ratio |"
        )
        print("|---|---|---|---|---|---|---|---|---|---|---|")
        for resolution in args.resolutions:
            flags = [
                *("--pretrained_model_name_or_path", str(model), "--instance_data_dir", str(photos)),
                *("--instance_prompt", "a photo of sks dog", "--resolution", str(resolution)),
                *("--train_batch_size", "1", "--gradient_accumulation_steps", "1"),
                *("--max_train_steps", str(args.steps), "--checkpointing_steps", str(10 * args.steps)),
                *("--learning_rate", "1e-4", "--lr_scheduler", "constant", "--lr_warmup_steps", "0"),
                *("--rank", str(args.rank), "--max_sequence_length", str(args.max_sequence_length)),
                *("--seed", "0", "--report_to", "tensorboard"),
            ]
            results = interleaved(scripts, flags, args.rounds, workdir, env, f"px{resolution}")
            ours, peer = median_run(results["hfvision"]), median_run(results["diffusers"])
            print(
                f"| {resolution} | {ours.step:.3f} | {peer.step:.3f} | {ours.step / peer.step:.2f} "
                f"| {ours.step_cpu / peer.step_cpu:.2f} "
                f"| {ours.wall:.1f} | {peer.wall:.1f} | {ours.wall / peer.wall:.2f} "
                f"| {ours.rss_mb:.0f} | {peer.rss_mb:.0f} | {ours.rss_mb / peer.rss_mb:.2f} |",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
