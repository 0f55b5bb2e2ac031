"""DreamBooth: train the tiny SD1 model a few steps on a bundled photo (prior preservation, text encoder), with a
checkpoint, a SIGKILL-free resume check, and the validation images it renders."""

from __future__ import annotations

import shutil
import time

ORDER = 40
TITLE = "DreamBooth training (Accelerate): prior preservation, text encoder, checkpoints, validation images"


def _reset_accelerate() -> None:
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()


def run(ctx) -> None:
    import torch

    from ...testing import sample_image, save_tiny_sd
    from ...testing.dreambooth import tiny_dreambooth_kwargs
    from ...training import DreamBoothConfig, DreamBoothTrainer

    sec = ctx.section
    base = ctx.model_dir("sd1", lambda d: save_tiny_sd(d, "sd1"))
    photos = ctx.work_dir / "s40" / "photos"
    shutil.rmtree(photos.parent, ignore_errors=True)
    photos.mkdir(parents=True)
    sample_image("astronaut").resize((64, 64)).save(photos / "astronaut.png")
    sample_image("astronaut").crop((96, 0, 416, 320)).resize((64, 64)).save(photos / "astronaut-face.png")
    out = ctx.output_dir / "dreambooth"
    shutil.rmtree(out, ignore_errors=True)
    config = DreamBoothConfig(
        **tiny_dreambooth_kwargs(
            base,
            photos,
            out,
            class_data_dir=str(ctx.work_dir / "s40" / "class_images"),
            train_text_encoder=True,
            text_encoder_steps=2,
            checkpointing_steps=2,
            validation_prompt=["a photo of {token} person on the moon"],
            validation_steps=2,
            num_validation_images=2,
            validation_inference_steps=4,
            seed=0,
        )
    )
    sec.text(
        f"Base: tiny random SD1 ({base}); 2 instance photos + 2 generated class images per step at 64 px; "
        "UNet and text encoder trained, the text encoder frozen and dropped from the optimizer after step 2."
    )

    class Log:
        rows: list = []

        def on_step_end(self, trainer, step, logs):
            self.rows.append({"step": step, **{k: round(v, 6) for k, v in logs.items()}})

    log = Log()
    start = time.perf_counter()
    _reset_accelerate()
    try:
        result = DreamBoothTrainer(config, callbacks=[log]).train()
    finally:
        _reset_accelerate()
    seconds = time.perf_counter() - start
    sec.table(log.rows, f"Loss and learning rates per step ({seconds:.1f} s in total)")
    for path in sorted((out / "samples").rglob("*.png")):
        sec.image(path, f"validation, {path.parent.name}, image {path.stem}")
    for path in sorted(config.class_data_dir and (ctx.work_dir / "s40" / "class_images").glob("*.png")):
        copy = ctx.path(f"dreambooth-class/{path.name}")
        shutil.copy(path, copy)
        sec.image(copy, "generated class image")

    # resume: a second trainer continues from checkpoint-2 and must reach the same weights
    again = DreamBoothConfig(
        **{**config.to_dict(), "output_dir": str(ctx.work_dir / "s40" / "resumed"), "validation_prompt": None}
    )
    (ctx.work_dir / "s40" / "resumed").mkdir(parents=True)
    shutil.copytree(out / "checkpoint-2", ctx.work_dir / "s40" / "resumed" / "checkpoint-2")
    _reset_accelerate()
    try:
        resumed = DreamBoothTrainer(DreamBoothConfig(**{**again.to_dict(), "resume_from_checkpoint": "latest"}))
        resumed.train()
    finally:
        _reset_accelerate()
    from diffusers import UNet2DConditionModel

    a = UNet2DConditionModel.from_pretrained(out / "unet").state_dict()
    b = UNet2DConditionModel.from_pretrained(ctx.work_dir / "s40" / "resumed" / "unet").state_dict()
    same = all(torch.equal(a[k], b[k]) for k in a)
    files = sorted(p.name for p in out.iterdir())
    sec.table(
        [
            {"output": ", ".join(files)},
            {"output": f"final loss {result.final_loss:.4f} after {result.global_step} steps"},
            {"output": f"resumed from checkpoint-2 in a new trainer: final UNet bit-identical = {same}"},
        ],
        "Output folder (a stock diffusers StableDiffusionPipeline + training_config.yaml + model card)",
    )
    if not same:
        raise RuntimeError("resuming from checkpoint-2 did not reproduce the uninterrupted run")
