"""Single-file conversion time per MB, next to the baselines it should be compared with.

- ``to_single_file`` vs a raw copy of the same weights (``safetensors`` load of every component + one ``save_file``),
  i.e. the conversion's overhead over the I/O it cannot avoid;
- ``from_single_file`` (diffusers' loader with the configs from the header) vs diffusers' ``from_pretrained`` of the
  original directory.

Two pipelines: the tiny SD1 test model (~6 MB, dominated by fixed costs such as tokenizer loading) and a larger
synthetic SD1-shaped one (~300 MB, 4 levels, 2 layers per block, 6-layer text encoder). Variants run interleaved
and the best of ``--repeats`` wall-clock runs is reported, so load from other processes hits them alike.

    python benchmarks/conversion.py [--repeats 3] [--threads 1]

``measure_conversion(pipeline_dir)`` is importable (e.g. by benchmarks/generation.py).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path


def _best(calls: dict, repeats: int) -> dict[str, float]:
    times = {name: [] for name in calls}
    names = list(calls)
    for r in range(repeats):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            start = time.perf_counter()
            calls[name]()
            times[name].append(time.perf_counter() - start)
    return {name: min(t) for name, t in times.items()}


def measure_conversion(pipeline_dir: str | Path, repeats: int = 3) -> dict:
    """Best-of-``repeats`` seconds for to/from single file and their baselines, and the file size in MB."""
    from diffusers import DiffusionPipeline
    from safetensors.torch import load_file, save_file

    from hfvision.conversion import from_single_file, to_single_file

    pipeline_dir = Path(pipeline_dir)
    weights = sorted(pipeline_dir.glob("*/*.safetensors"))
    with tempfile.TemporaryDirectory() as tmp:
        out, raw = Path(tmp) / "model.safetensors", Path(tmp) / "raw.safetensors"

        def raw_copy():
            state = {}
            for path in weights:
                state.update({f"{path.parent.name}.{k}": v for k, v in load_file(path).items()})
            save_file(state, raw)

        to_single_file(pipeline_dir, out)  # warm-up (imports, tokenizer cache) and the file to load
        calls = {
            "to_single_file": lambda: to_single_file(pipeline_dir, out, overwrite=True),
            "raw copy": raw_copy,
            "from_single_file": lambda: from_single_file(out),
            "from_pretrained": lambda: DiffusionPipeline.from_pretrained(pipeline_dir),
        }
        result = _best(calls, repeats)
        result["MB"] = out.stat().st_size / 1e6
    return result


def save_synthetic_sd1(out_dir: Path) -> Path:
    """An SD1-shaped pipeline of ~300 MB (random weights): 4 levels, 2 layers per block, 6-layer CLIP."""
    import torch
    from diffusers import AutoencoderKL, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextModel

    from hfvision.testing import clip_tokenizer, tiny_scheduler, tiny_text_config

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        block_out_channels=(64, 128, 256, 256),
        layers_per_block=2,
        cross_attention_dim=256,
        attention_head_dim=8,
        sample_size=32,
    )
    vae = AutoencoderKL(
        block_out_channels=(64, 128, 256, 256),
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        layers_per_block=2,
        latent_channels=4,
    )
    text = CLIPTextModel(
        tiny_text_config(
            hidden_size=256,
            intermediate_size=1024,
            num_hidden_layers=6,
            num_attention_heads=8,
            hidden_act="quick_gelu",
        )
    )
    pipe = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text,
        tokenizer=clip_tokenizer(),
        unet=unet,
        scheduler=tiny_scheduler("sd1"),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(out_dir)
    return out_dir


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    args = parser.parse_args()
    import torch

    from hfvision.testing import save_tiny_sd

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        models = {
            "tiny sd1": save_tiny_sd(Path(tmp) / "tiny", "sd1"),
            "synthetic sd1": save_synthetic_sd1(Path(tmp) / "synthetic"),
        }
        for name, model_dir in models.items():
            r = measure_conversion(model_dir, args.repeats)
            mb = r["MB"]
            print(f"{name} ({mb:.1f} MB fp32), best of {args.repeats}, wall clock:")
            for label, baseline in (("to_single_file", "raw copy"), ("from_single_file", "from_pretrained")):
                print(
                    f"  {label:<17} {r[label]:6.2f} s  {r[label] / mb * 1000:7.1f} ms/MB   vs {baseline:<16} "
                    f"{r[baseline]:6.2f} s  ratio {r[label] / r[baseline]:5.2f}"
                )


if __name__ == "__main__":
    main()
