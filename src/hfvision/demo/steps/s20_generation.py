"""DreamBoothPipeline: generation equal to diffusers', ControlNet (canny) conditioning, registries, URL loading."""

from __future__ import annotations

import time

ORDER = 20
TITLE = "Generation with DreamBoothPipeline (+ ControlNet canny) and the model registries"


def _save(images, path, scale: int = 4):
    """Save an (N, H, W, 3) float array side by side, upscaled with nearest-neighbour so pixels stay visible."""
    import numpy as np
    from PIL import Image

    strip = np.concatenate(list(images), axis=1)
    img = Image.fromarray((strip * 255).round().astype("uint8"))
    img.resize((img.width * scale, img.height * scale), Image.NEAREST).save(path)
    return path


def run(ctx) -> None:
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: one thread is faster and does not fight other processes for cores
    try:
        _run(ctx)
    finally:
        torch.set_num_threads(threads)


def _run(ctx) -> None:
    import numpy as np
    import torch
    from diffusers import StableDiffusionControlNetPipeline
    from PIL import Image

    from ... import testing as t
    from ...models import BASE_MODELS, list_controlnets, load_pipeline
    from ...pipelines.controlnet_utils import canny_image
    from ...pipelines.dreambooth import DreamBoothPipeline

    sec = ctx.section
    model_dir = ctx.model_dir("sd1", lambda d: t.save_tiny_sd(d, "sd1"))
    reference = load_pipeline(model_dir)
    pipe = DreamBoothPipeline.from_components(reference, instance_token="sks", class_noun="dog")
    for p in (reference, pipe):
        p.set_progress_bar_config(disable=True)
    kwargs = dict(num_inference_steps=4, guidance_scale=6.0, height=64, width=64, output_type="np")

    start = time.perf_counter()
    ours = pipe(
        "a photo of {token} {class}", num_images_per_prompt=3, generator=torch.Generator().manual_seed(0), **kwargs
    ).images
    seconds = time.perf_counter() - start
    theirs = reference(
        "a photo of sks dog", num_images_per_prompt=3, generator=torch.Generator().manual_seed(0), **kwargs
    ).images
    diff = float(np.abs(ours - theirs).max())
    sec.text(
        f"DreamBoothPipeline(instance_token='sks', class_noun='dog') expanded 'a photo of {{token}} {{class}}' "
        f"and generated 3 images ({seconds:.2f} s); diffusers' StableDiffusionPipeline on the same components "
        f"and seed: max |pixel diff| = {diff:.2g}."
    )
    sec.image(
        _save(ours, ctx.path("generation/dreambooth.png")),
        "DreamBoothPipeline, 3 images per prompt (tiny random weights)",
    )
    if diff > 1e-5:
        raise RuntimeError(f"DreamBoothPipeline differs from diffusers by {diff}")

    # ControlNet: canny edges of a real photo condition a tiny ControlNet. Its zero-initialised output layers are
    # perturbed so the condition visibly changes the (random-weight) output.
    photo = t.sample_image("astronaut").resize((64, 64), Image.BICUBIC)
    edges = canny_image(photo)
    controlnet = t.tiny_controlnet("sd1")
    torch.manual_seed(100)
    with torch.no_grad():
        for module in [*controlnet.controlnet_down_blocks, controlnet.controlnet_mid_block]:
            for param in module.parameters():
                param.normal_(std=0.2)
    controlled = DreamBoothPipeline.from_components(pipe, controlnet=controlnet)
    controlled.set_progress_bar_config(disable=True)
    cn_kwargs = {k: v for k, v in kwargs.items() if k not in ("height", "width")}
    with_cn = controlled(
        "a photo of {token} {class}", control_image=edges, generator=torch.Generator().manual_seed(0), **cn_kwargs
    ).images
    diffusers_cn = StableDiffusionControlNetPipeline(
        **reference.components, controlnet=controlnet, requires_safety_checker=False
    )
    diffusers_cn.set_progress_bar_config(disable=True)
    expected = diffusers_cn(
        "a photo of sks dog", image=edges, generator=torch.Generator().manual_seed(0), **cn_kwargs
    ).images
    cn_diff = float(np.abs(with_cn - expected).max())
    photo.save(ctx.path("generation/photo.png"))
    edges.resize((256, 256), Image.NEAREST).save(ctx.path("generation/canny.png"))
    sec.image(ctx.path("generation/photo.png"), "input photo (64 px)")
    sec.image(ctx.path("generation/canny.png"), "canny_image(photo): the ControlNet condition")
    sec.image(
        _save(np.concatenate([ours[:1], with_cn]), ctx.path("generation/controlnet.png")),
        "same seed without / with the ControlNet",
    )
    sec.text(
        f"ControlNet run vs diffusers' StableDiffusionControlNetPipeline: max |pixel diff| = {cn_diff:.2g}; "
        f"change caused by the condition: {float(np.abs(with_cn - ours[:1]).max()):.3f}."
    )
    try:
        DreamBoothPipeline.from_components(pipe, controlnet=t.tiny_controlnet("sdxl"))
        refused = "NOT refused (bug)"
    except ValueError as err:
        refused = f"refused: {err}"
    sec.text(f"An SDXL-shaped ControlNet on this SD1 pipeline: {refused}")
    if cn_diff > 1e-5:
        raise RuntimeError(f"ControlNet generation differs from diffusers by {cn_diff}")

    rows = [
        {
            "key": m.key,
            "family": m.family,
            "native px": m.resolution,
            "train px": ", ".join(map(str, m.training_resolutions)),
            "prediction": m.prediction_type,
            "repo": m.repo_id,
            "revision": m.revision[:12],
            "ControlNets": ", ".join(list_controlnets(m.key)),
        }
        for m in BASE_MODELS.values()
    ]
    sec.table(rows, "Base-model registry (revisions: see hfvision/models/registry.py for their provenance)")

    # Save as a DreamBooth model and reload it: the config remembers the subject, the code ships with the weights.
    out = ctx.work_dir / "dreambooth-model"
    pipe.save_pretrained(out)
    again = load_pipeline(out)
    shipped = sorted(p.name for p in out.glob("*.py"))
    if type(again) is not DreamBoothPipeline:
        raise RuntimeError(f"load_pipeline returned {type(again).__name__} for a saved DreamBoothPipeline")
    sec.text(
        f"save_pretrained wrote {shipped} next to the weights; load_pipeline gave {type(again).__name__} with "
        f"instance_token={again.instance_token!r}, class_noun={again.class_noun!r}, family={again.config.family!r}. "
        "Elsewhere: DiffusionPipeline.from_pretrained(repo, custom_pipeline='dreambooth', trust_remote_code=True)."
    )
