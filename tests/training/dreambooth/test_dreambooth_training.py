"""A full fine-tune end to end (SD1, prior preservation, text encoder, validation, tensorboard, checkpoint limit):
the output folder loads with diffusers and with hfvision's DreamBoothPipeline and reproduces the validation images."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from hfvision.training import DreamBoothConfig


@pytest.fixture(scope="module")
def sd1_run(tiny_run_kwargs, tmp_path_factory):
    from accelerate.state import AcceleratorState, GradientState

    from hfvision.training import DreamBoothTrainer

    out = tmp_path_factory.mktemp("sd1-full")
    config = DreamBoothConfig(
        **tiny_run_kwargs(
            out,
            class_data_dir=None,  # generated
            train_text_encoder=True,
            checkpointing_steps=2,
            checkpoints_total_limit=1,
            validation_prompt=["a photo of {token} person on the moon"],
            validation_steps=2,
            num_validation_images=2,
            validation_inference_steps=2,
            report_to="tensorboard",
        )
    )
    trainer = DreamBoothTrainer(config)
    result = trainer.train()
    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()
    return trainer, result, config


def _render(pipe, prompt: str, seed: int) -> np.ndarray:
    """Two denoising steps at the run's 64 px from a seeded CPU generator, as float arrays."""
    generator = torch.Generator().manual_seed(seed)
    return pipe(prompt, num_inference_steps=2, height=64, width=64, output_type="np", generator=generator).images


def test_output_is_a_stock_diffusers_pipeline_with_the_trained_weights(
    sd1_run, tiny_model_dir, load_weights, assert_bit_identical
):
    from diffusers import DiffusionPipeline, StableDiffusionPipeline

    trainer, result, config = sd1_run
    out = result.output_dir
    pipe = DiffusionPipeline.from_pretrained(out)
    assert type(pipe) is StableDiffusionPipeline
    trained = trainer.accelerator.unwrap_model(trainer.prepared_denoiser).state_dict()
    assert all(torch.equal(v, trained[k]) for k, v in pipe.unet.state_dict().items())
    # the final checkpoint holds the same UNet and text encoder, in diffusers' layout (checkpoint-N/unet/, ...)
    ckpt = {k: v for k, v in load_weights(out / "checkpoint-4").items() if not k.startswith("noise_rng")}
    final = load_weights(out)
    assert_bit_identical({k: v for k, v in final.items() if k.split("/")[0] in ("unet", "text_encoder")}, ckpt)
    # frozen VAE: byte-identical to the base; trained parts changed
    base = load_weights(tiny_model_dir("sd1"))
    assert_bit_identical(
        {k: v for k, v in base.items() if k.startswith("vae/")},
        {k: v for k, v in final.items() if k.startswith("vae/")},
    )
    for part in ("unet/", "text_encoder/"):
        assert any(not torch.equal(v, final[k]) for k, v in base.items() if k.startswith(part)), part
    assert DreamBoothConfig.from_yaml(out / "training_config.yaml") == config
    card = (out / "README.md").read_text()
    assert "a photo of sks person" in card and "Trigger word: `sks`" in card and "![samples](samples.png)" in card


def test_saved_pipeline_reproduces_the_validation_images(sd1_run):
    """Validation uses a fixed seed: the saved pipeline renders exactly the images saved at the last step."""
    from diffusers import DiffusionPipeline

    from hfvision.training.dreambooth.validation import render_validation

    trainer, result, config = sd1_run
    folder = result.output_dir / "samples" / "step-000004"
    assert sorted(p.name for p in folder.glob("*.png")) == ["0-0.png", "0-1.png"]
    assert sorted(p.name for p in (result.output_dir / "samples").iterdir()) == ["step-000002", "step-000004"]
    pipe = DiffusionPipeline.from_pretrained(result.output_dir)
    images = render_validation(pipe, ["a photo of sks person on the moon"], 2, config.seed, 64, 2, 7.5)[0]
    for i, image in enumerate(images):
        assert np.array_equal(np.asarray(image), np.asarray(Image.open(folder / f"0-{i}.png")))


def test_dreambooth_pipeline_loads_the_output(sd1_run):
    from diffusers import DiffusionPipeline

    from hfvision.pipelines.dreambooth import DreamBoothPipeline

    _, result, _ = sd1_run
    ours = DreamBoothPipeline.from_pretrained(result.output_dir)
    stock = DiffusionPipeline.from_pretrained(result.output_dir)
    assert np.abs(_render(ours, "a photo of sks person", 1) - _render(stock, "a photo of sks person", 1)).max() <= 1e-5


def test_checkpoint_limit_and_tensorboard_events(sd1_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    _, result, _ = sd1_run
    assert [p.name for p in result.output_dir.glob("checkpoint-*")] == ["checkpoint-4"]  # limit 1
    assert not list(result.output_dir.glob(".checkpoint-*"))
    events = list((result.output_dir / "logs").rglob("events.out.tfevents.*"))
    acc = EventAccumulator(str(events[0].parent), size_guidance={"images": 0, "scalars": 0})
    acc.Reload()
    tags = acc.Tags()
    assert {"loss", "lr", "text_encoder_lr"} <= set(tags["scalars"])
    assert [e.step for e in acc.Scalars("loss")] == [1, 2, 3, 4]
    assert acc.Scalars("loss")[-1].value == pytest.approx(result.final_loss)
    images = [t for t in tags["images"] if t.startswith("validation/0")]
    assert images and sorted({e.step for t in images for e in acc.Images(t)}) == [2, 4]


def test_trained_model_knows_its_token(sd1_run):
    """model_index.json records the token and class noun: {token}/{class} prompts work on the fresh output, and
    stock diffusers still loads it as its own StableDiffusionPipeline (extra keys ignored)."""
    import json

    from diffusers import StableDiffusionPipeline

    from hfvision.pipelines.dreambooth import DreamBoothPipeline

    _, result, _ = sd1_run
    index = json.loads((result.output_dir / "model_index.json").read_text())
    assert (index["instance_token"], index["class_noun"], index["_class_name"]) == (
        "sks",
        "person",
        "StableDiffusionPipeline",
    )
    assert (result.output_dir / "dreambooth.py").is_file()  # the pipeline's code ships with the weights
    ours = DreamBoothPipeline.from_pretrained(result.output_dir)
    stock = StableDiffusionPipeline.from_pretrained(result.output_dir)
    a, b = _render(ours, "a photo of {token} {class}", 3), _render(stock, "a photo of sks person", 3)
    assert np.abs(a - b).max() <= 1e-5

    # the CLI on the fresh output: {token}/{class} expand from model_index.json, same image as the literal prompt
    from PIL import Image

    from hfvision.cli.main import main

    out = result.output_dir.parent / f"{result.output_dir.name}-cli.png"
    argv = ["generate", "--model", str(result.output_dir), "--steps", "2", "--height", "64", "--width", "64"]
    assert main([*argv, "--seed", "3", "--prompt", "a photo of {token} {class}", "--out", str(out)]) == 0
    literal = stock(
        "a photo of sks person", generator=torch.Generator().manual_seed(3), num_inference_steps=2, height=64, width=64
    ).images[0]
    assert np.array_equal(np.asarray(Image.open(out).convert("RGB")), np.asarray(literal))


def test_a_finished_run_has_only_the_attributes_declared_in_init(sd1_run):
    """Validation, checkpoints, the text encoder and trackers ran: none of them added an attribute (see also
    test_trainer_state.py), and every declared one was set."""
    from hfvision.training import DreamBoothTrainer

    trainer, _, config = sd1_run
    assert set(vars(trainer)) == set(vars(DreamBoothTrainer(config)))
    unset = [
        name
        for name in ("accelerator", "prepared_denoiser", "optimizer", "checkpoints", "progress")
        if getattr(trainer, name) is None
    ]
    assert not unset and trainer.global_step == 4 and len(trainer.prepared_text_encoders) == 1
