"""diffusers directory -> single file (original SD layout) -> diffusers, with exact weights and identical images."""

from __future__ import annotations

import time

ORDER = 30
TITLE = "Single-file conversion (AUTOMATIC1111 / ComfyUI layout) and back"


def run(ctx) -> None:
    import numpy as np
    import torch
    from diffusers import DiffusionPipeline
    from PIL import Image
    from safetensors import safe_open

    from ... import testing as t
    from ...conversion import compare_pipelines, detect_family, from_single_file, to_single_file

    sec = ctx.section
    model_dir = ctx.model_dir("sd1", lambda d: t.save_tiny_sd(d, "sd1"))
    path = ctx.path("conversion/tiny-sd1.safetensors")

    start = time.perf_counter()
    to_single_file(model_dir, path, metadata={"trigger_word": "sks", "base_model": "sd15"}, overwrite=True)
    to_seconds = time.perf_counter() - start
    with safe_open(path, "pt") as f:
        keys, meta = list(f.keys()), f.metadata()
    family, prediction_type = detect_family(path)
    prefixes = {}
    for key in keys:
        prefix = ".".join(key.split(".")[:2]) if key.startswith("model.") else key.split(".")[0]
        prefixes[prefix] = prefixes.get(prefix, 0) + 1
    sec.text(
        f"Wrote {path.name} ({path.stat().st_size / 1e6:.2f} MB, {len(keys)} tensors) in {to_seconds:.2f} s; "
        f"detected family {family!r}, prediction type {prediction_type!r}; header trigger phrase "
        f"{meta.get('modelspec.trigger_phrase')!r}, architecture {meta.get('modelspec.architecture')!r}."
    )
    sec.table([{"original prefix": p, "tensors": n} for p, n in sorted(prefixes.items())], "Keys by original prefix")
    sec.table(
        [{"example original key": k} for k in keys if ".mid.attn_1.q." in k or "input_blocks.1.1.proj_in" in k],
        "Examples (VAE attention as 1x1 convs, UNet SpatialTransformer)",
    )

    start = time.perf_counter()
    loaded = from_single_file(path)
    from_seconds = time.perf_counter() - start
    original = DiffusionPipeline.from_pretrained(model_dir)
    rows = []
    for name, result in compare_pipelines(original, loaded).items():
        rows.append(
            {
                "component": name,
                "tensors": result.num_tensors,
                "missing": len(result.missing),
                "unexpected": len(result.unexpected),
                "max |diff|": result.max_abs_diff,
            }
        )
    sec.table(
        rows,
        f"diffusers -> single file ({to_seconds:.2f} s) -> diffusers via diffusers' from_single_file "
        f"with the configs stored in the header, offline ({from_seconds:.2f} s)",
    )

    images = []
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny 64x64 models: one thread is as fast, and immune to a busy machine's contention
    try:
        for pipe in (original, loaded):
            # fresh, aligned weights (see tests/conversion/conversion_helpers.py)
            for module in pipe.components.values():
                if isinstance(module, torch.nn.Module):
                    for tensor in [*module.parameters(), *module.buffers()]:
                        tensor.data = tensor.data.clone()
            generator = torch.Generator().manual_seed(0)
            out = pipe(
                "a photo of sks dog", num_inference_steps=4, height=64, width=64, output_type="np", generator=generator
            )
            images.append(out.images[0])
    finally:
        torch.set_num_threads(threads)
    identical = bool(np.array_equal(images[0], images[1]))
    for label, image in zip(("original", "round-trip"), images):
        png = ctx.path(f"conversion/{label}.png")
        Image.fromarray((image * 255).round().astype("uint8")).save(png)
        sec.image(png, f"{label} pipeline, seed 0")
    sec.text(
        f"Same seed, same prompt: images identical = {identical} "
        f"(max pixel diff {float(np.abs(images[0] - images[1]).max())})."
    )
    if not identical or not all(r["missing"] == r["unexpected"] == 0 and r["max |diff|"] == 0 for r in rows):
        raise RuntimeError("single-file round trip changed the model")
