"""DreamBoothTrainer step cost vs a bare hand-written loop of the same math, in one process.

Both train the same tiny SD1 model (UNet + text encoder, AdamW, gradient clipping) on 2 instance + 2 class images
per step with prior preservation. The bare loop has no dataloader, no accelerate, no logging: it indexes
pre-stacked tensors. Reported per resolution: steps/s, the trainer/bare time ratio (target <= 1.05), peak RSS
growth during the run, and the split of a step into data (+ loop overhead) / forward / backward / optimizer.

    python benchmarks/dreambooth_step.py [--steps 10] [--warmup 2] [--resolutions 64 128] [--rounds 2] [--threads 1]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


class PeakRSS:
    """Samples this process's resident set size every 5 ms; ``peak - start`` is the growth during the block."""

    def __enter__(self):
        self.start = self.peak = self._rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    @staticmethod
    def _rss() -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def _watch(self):
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, self._rss())

    @property
    def growth_mb(self) -> float:
        return (self.peak - self.start) / 1e6


def make_assets(work: Path, resolution: int) -> tuple[Path, Path, Path]:
    from hfvision.testing import sample_image, save_tiny_sd

    base = work / "tiny-sd1"
    if not base.exists():
        save_tiny_sd(base, "sd1")
    photos, classes = work / f"photos-{resolution}", work / f"class-{resolution}"
    for folder, names in ((photos, ("astronaut", "coffee")), (classes, ("chelsea", "rocket"))):
        folder.mkdir(exist_ok=True)
        for name in names:
            sample_image(name).resize((resolution, resolution)).save(folder / f"{name}.png")
    return base, photos, classes


def run_trainer(base, photos, classes, resolution, steps, warmup, out):
    from accelerate.state import AcceleratorState, GradientState

    from hfvision.training import DreamBoothConfig, DreamBoothTrainer

    config = DreamBoothConfig(
        pretrained_model_name_or_path=str(base),
        instance_data_dir=str(photos),
        instance_prompt="a photo of sks",
        with_prior_preservation=True,
        class_data_dir=str(classes),
        class_prompt="a photo of a thing",
        num_class_images=2,
        resolution=resolution,
        train_batch_size=2,
        max_train_steps=warmup + steps,
        train_text_encoder=True,
        learning_rate=1e-5,
        checkpointing_steps=10**6,
        report_to="none",
        output_dir=str(out),
    )
    trainer = DreamBoothTrainer(config)
    trainer.setup()
    parts = {"forward": 0.0, "backward": 0.0, "optimizer": 0.0}
    marks = {}

    def timed(name, fn):
        def wrapper(*args, **kwargs):
            start = time.perf_counter()
            result = fn(*args, **kwargs)
            if trainer.global_step >= warmup:
                parts[name] += time.perf_counter() - start
            return result

        return wrapper

    trainer.compute_loss = timed("forward", trainer.compute_loss)
    trainer.accelerator.backward = timed("backward", trainer.accelerator.backward)
    trainer.optimizer_step = timed("optimizer", trainer.optimizer_step)

    class Clock:
        def on_step_end(self, trainer, step, logs):
            marks[step] = time.perf_counter()

    trainer.callbacks.append(Clock())
    with PeakRSS() as rss:
        trainer.training_loop()
    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()
    total = marks[warmup + steps] - marks[warmup]
    parts["data+loop"] = total - sum(parts.values())
    return total / steps, {k: v / steps for k, v in parts.items()}, rss.growth_mb


def run_bare(base, photos, classes, resolution, steps, warmup):
    """The same math written by hand: no dataloader, no accelerate, no logging."""
    import numpy as np
    import torch
    import torch.nn.functional as F
    from diffusers import DDPMScheduler, StableDiffusionPipeline
    from PIL import Image

    pipe = StableDiffusionPipeline.from_pretrained(base, safety_checker=None, feature_extractor=None)
    unet, vae, text_encoder, tokenizer = pipe.unet, pipe.vae, pipe.text_encoder, pipe.tokenizer
    scheduler = DDPMScheduler.from_config(pipe.scheduler.config)
    vae.requires_grad_(False)
    unet.train()
    text_encoder.train()
    params = [*unet.parameters(), *text_encoder.parameters()]
    optimizer = torch.optim.AdamW(params, lr=1e-5, weight_decay=1e-2)

    def load(folder):
        arrays = [np.asarray(Image.open(p).convert("RGB")) for p in sorted(folder.glob("*.png"))]
        return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float() / 127.5 - 1

    pixels = torch.cat([load(photos), load(classes)])  # 2 instance + 2 class
    ids = tokenizer(
        ["a photo of sks"] * 2 + ["a photo of a thing"] * 2,
        padding="max_length",
        max_length=tokenizer.model_max_length,
        truncation=True,
        return_tensors="pt",
    ).input_ids
    g = torch.Generator().manual_seed(0)
    parts = {"data+loop": 0.0, "forward": 0.0, "backward": 0.0, "optimizer": 0.0}
    with PeakRSS() as rss:
        for step in range(warmup + steps):
            if step == warmup:
                start = time.perf_counter()
            t0 = time.perf_counter()
            batch = pixels[torch.randperm(2, generator=g).repeat(2) + torch.tensor([0, 0, 2, 2])]
            t1 = time.perf_counter()
            with torch.no_grad():
                latents = vae.encode(batch).latent_dist.sample(generator=g) * vae.config.scaling_factor
            noise = torch.randn(latents.shape, generator=g)
            timesteps = torch.randint(0, scheduler.config.num_train_timesteps, (4,), generator=g)
            noisy = scheduler.add_noise(latents, noise, timesteps)
            pred = unet(noisy, timesteps, text_encoder(ids)[0]).sample
            loss = F.mse_loss(pred[:2], noise[:2]) + F.mse_loss(pred[2:], noise[2:])
            t2 = time.perf_counter()
            loss.backward()
            t3 = time.perf_counter()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            t4 = time.perf_counter()
            if step >= warmup:
                for name, dt in zip(parts, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
                    parts[name] += dt
        total = time.perf_counter() - start
    return total / steps, {k: v / steps for k, v in parts.items()}, rss.growth_mb


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2, help="alternate bare/trainer runs; medians are reported")
    parser.add_argument("--resolutions", type=int, nargs="+", default=[64, 128])
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = parser.parse_args()
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)

    print(f"torch threads: {torch.get_num_threads()}, load average: {os.getloadavg()[0]:.1f}")
    work = Path(tempfile.mkdtemp(prefix="db-bench-"))
    for resolution in args.resolutions:
        base, photos, classes = make_assets(work, resolution)
        bare, ours = [], []
        for r in range(args.rounds):  # alternate the order: whoever runs first in a process pays for warm-up
            for kind in ("bare", "trainer") if r % 2 == 0 else ("trainer", "bare"):
                if kind == "bare":
                    bare.append(run_bare(base, photos, classes, resolution, args.steps, args.warmup))
                else:
                    out = work / f"out-{resolution}-{r}"
                    ours.append(run_trainer(base, photos, classes, resolution, args.steps, args.warmup, out))
        rows = {"bare loop": bare, "DreamBoothTrainer": ours}
        print(
            f"\n== {resolution}x{resolution}, 2 instance + 2 class images/step, UNet + text encoder, "
            f"{args.steps} steps x {args.rounds} rounds (median)"
        )
        print(
            f"{'':18} {'steps/s':>8} {'s/step':>8} {'data+loop':>10} {'forward':>8} {'backward':>9} "
            f"{'optimizer':>9} {'peak RSS +MB':>12}"
        )
        medians = {}
        for name, runs in rows.items():
            step = statistics.median(r[0] for r in runs)
            parts = {k: statistics.median(r[1][k] for r in runs) for k in runs[0][1]}
            rss = statistics.median(r[2] for r in runs)
            medians[name] = step
            print(
                f"{name:18} {1 / step:8.2f} {step:8.3f} {parts['data+loop']:10.3f} {parts['forward']:8.3f} "
                f"{parts['backward']:9.3f} {parts['optimizer']:9.3f} {rss:12.0f}"
            )
        print(f"time ratio trainer/bare: {medians['DreamBoothTrainer'] / medians['bare loop']:.3f} (target <= 1.05)")


if __name__ == "__main__":
    main()
