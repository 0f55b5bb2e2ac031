"""The example scripts as drop-ins for diffusers' DreamBooth scripts: their command lines parse unchanged, and the
results follow diffusers' layout (diffusers components and checkpoint-N/unet for full runs, a PEFT LoRA file whose
keys are named after the trained models for LoRA runs, checkpoint pruning also after a resume)."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import pytest
import torch

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"

# Every flag of diffusers' train_dreambooth.py, train_dreambooth_lora.py and train_dreambooth_lora_sdxl.py
# (diffusers main, 2026): the scripts here must accept all of them.
DIFFUSERS_FLAGS = """pretrained_model_name_or_path pretrained_vae_model_name_or_path revision variant tokenizer_name
dataset_name dataset_config_name instance_data_dir cache_dir image_column caption_column repeats class_data_dir
instance_prompt class_prompt with_prior_preservation prior_loss_weight num_class_images output_dir output_kohya_format
seed resolution center_crop random_flip train_text_encoder train_batch_size sample_batch_size num_train_epochs
max_train_steps checkpointing_steps checkpoints_total_limit resume_from_checkpoint gradient_accumulation_steps
gradient_checkpointing learning_rate text_encoder_lr scale_lr lr_scheduler snr_gamma lr_warmup_steps lr_num_cycles
lr_power dataloader_num_workers optimizer use_8bit_adam adam_beta1 adam_beta2 prodigy_beta3 prodigy_decouple
adam_weight_decay adam_weight_decay_text_encoder adam_epsilon prodigy_use_bias_correction prodigy_safeguard_warmup
max_grad_norm push_to_hub hub_token hub_model_id logging_dir allow_tf32 report_to validation_prompt
num_validation_images validation_steps validation_epochs mixed_precision prior_generation_precision local_rank
enable_xformers_memory_efficient_attention set_grads_to_none offset_noise pre_compute_text_embeddings
tokenizer_max_length text_encoder_use_attention_mask skip_save_text_encoder validation_images
class_labels_conditioning validation_scheduler rank lora_dropout use_dora image_interpolation_mode
do_edm_style_training""".split()


def _script(name: str):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _reset_accelerate():
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()


def _command(base, photos, out, *extra) -> list[str]:
    """diffusers' test command line (32 px here to keep the test fast)."""
    return [
        "--pretrained_model_name_or_path",
        str(base),
        "--instance_data_dir",
        str(photos),
        "--instance_prompt",
        "photo",
        "--resolution",
        "32",
        "--train_batch_size",
        "1",
        "--gradient_accumulation_steps",
        "1",
        "--learning_rate",
        "5.0e-04",
        "--scale_lr",
        "--lr_scheduler",
        "constant",
        "--lr_warmup_steps",
        "0",
        "--output_dir",
        str(out),
        "--report_to",
        "none",
        *extra,
    ]


def _run(name: str, argv: list[str]) -> None:
    try:
        assert _script(name).main(argv) == 0
    finally:
        _reset_accelerate()


def _checkpoints(out: Path) -> set[str]:
    return {p.name for p in out.iterdir() if "checkpoint" in p.name}


def test_scripts_accept_every_diffusers_flag():
    from hfvision.training.dreambooth.args import build_argument_parser

    flags = {opt for action in build_argument_parser()._actions for opt in action.option_strings}
    assert not [f for f in DIFFUSERS_FLAGS if f"--{f}" not in flags]


def test_lora_scripts_use_diffusers_defaults(monkeypatch):
    from hfvision.training.dreambooth.args import parse_dreambooth_args

    required = ["--pretrained_model_name_or_path", "base", "--instance_data_dir", "photos"]
    lora = _script("train_dreambooth_lora")
    config = parse_dreambooth_args(required + ["--use_dora", "--rank", "8"], **lora.DEFAULTS)
    assert (config.use_lora, config.use_dora, config.rank, config.lora_alpha) == (True, True, 8, 8)
    assert (config.learning_rate, config.num_train_epochs, config.max_train_steps) == (5e-4, 1, None)
    sdxl = _script("train_dreambooth_lora_sdxl")

    class Parsed(Exception):
        pass

    class StopAfterParsing:
        def __init__(self, config):
            raise Parsed(config)

    monkeypatch.setattr("hfvision.training.dreambooth.scripts.DreamBoothTrainer", StopAfterParsing)
    with pytest.raises(Parsed) as parsed:
        sdxl.main(required + ["--train_text_encoder", "--output_kohya_format", "--snr_gamma", "5", "--offset_noise"])
    config = parsed.value.args[0]
    assert (config.resolution, config.learning_rate, config.text_encoder_lr) == (1024, 1e-4, 5e-6)
    assert (config.adam_weight_decay_text_encoder, config.output_kohya_format, config.noise_offset) == (
        1e-3,
        True,
        0.1,
    )
    with pytest.raises(ValueError, match=r"^--tokenizer_max_length is not supported .* DeepFloyd IF"):
        parse_dreambooth_args(required + ["--tokenizer_max_length", "77"])
    with pytest.raises(ValueError, match="only applies with --use_lora"):
        parse_dreambooth_args(required + ["--use_dora"])


@pytest.mark.slow
def test_full_script_checkpoints_in_diffusers_layout_and_prunes_after_resume(tiny_model_dir, instance_dir, tmp_path):
    from diffusers import DiffusionPipeline, UNet2DConditionModel

    base, out = tiny_model_dir("sd1"), tmp_path / "out"
    _run("train_dreambooth", _command(base, instance_dir, out, "--max_train_steps", "4", "--checkpointing_steps", "2"))
    assert _checkpoints(out) == {"checkpoint-2", "checkpoint-4"}
    assert (out / "scheduler" / "scheduler_config.json").is_file()
    final = DiffusionPipeline.from_pretrained(out, safety_checker=None)
    at_2 = UNet2DConditionModel.from_pretrained(out, subfolder="checkpoint-2/unet")
    at_4 = UNet2DConditionModel.from_pretrained(out, subfolder="checkpoint-4/unet")
    key = "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.weight"
    assert torch.equal(at_4.state_dict()[key], final.unet.state_dict()[key])
    assert not torch.equal(at_2.state_dict()[key], at_4.state_dict()[key])
    pipe = DiffusionPipeline.from_pretrained(base, unet=at_2, safety_checker=None)
    assert pipe("photo", num_inference_steps=1, height=32, width=32, output_type="np").images.shape == (1, 32, 32, 3)

    shutil.rmtree(out / "checkpoint-2")
    resume = [
        "--max_train_steps",
        "8",
        "--checkpointing_steps",
        "2",
        "--resume_from_checkpoint",
        "checkpoint-4",
        "--checkpoints_total_limit",
        "2",
    ]
    _run("train_dreambooth", _command(base, instance_dir, out, *resume))
    assert _checkpoints(out) == {"checkpoint-6", "checkpoint-8"}


def test_lora_script_writes_peft_keys_and_loads_in_diffusers(tiny_model_dir, instance_dir, tmp_path):
    from diffusers import DiffusionPipeline
    from safetensors import safe_open
    from safetensors.torch import load_file

    base = tiny_model_dir("sd1")
    unet_only, with_te = tmp_path / "unet-only", tmp_path / "with-te"
    _run("train_dreambooth_lora", _command(base, instance_dir, unet_only, "--max_train_steps", "2"))
    keys = list(load_file(unet_only / "pytorch_lora_weights.safetensors"))
    assert keys and all("lora" in k and k.startswith("unet.") for k in keys)
    with safe_open(unet_only / "pytorch_lora_weights.safetensors", "pt") as f:
        header = f.metadata()
    assert (header["modelspec.architecture"], header["modelspec.resolution"]) == ("stable-diffusion-v1/lora", "32x32")

    limit = ["--max_train_steps", "6", "--checkpointing_steps", "2", "--checkpoints_total_limit", "2"]
    _run("train_dreambooth_lora", _command(base, instance_dir, with_te, "--train_text_encoder", *limit))
    keys = list(load_file(with_te / "pytorch_lora_weights.safetensors"))
    assert {k.split(".")[0] for k in keys} == {"unet", "text_encoder"} and all("lora" in k for k in keys)
    assert _checkpoints(with_te) == {"checkpoint-4", "checkpoint-6"}
    pipe = DiffusionPipeline.from_pretrained(base)
    pipe.load_lora_weights(with_te / "checkpoint-4")  # checkpoints hold diffusers' LoRA file at the top
    pipe.load_lora_weights(with_te, adapter_name="final")
    assert pipe("a prompt", num_inference_steps=1, height=32, width=32, output_type="np").images.shape[0] == 1


@pytest.mark.slow
def test_sdxl_lora_script_with_text_encoders_and_kohya_output(tiny_model_dir, instance_dir, tmp_path):
    from diffusers import DiffusionPipeline
    from safetensors import safe_open
    from safetensors.torch import load_file

    base, out = tiny_model_dir("sdxl"), tmp_path / "out"
    extra = [
        "--max_train_steps",
        "3",
        "--checkpointing_steps",
        "2",
        "--checkpoints_total_limit",
        "2",
        "--train_text_encoder",
        "--output_kohya_format",
    ]
    _run("train_dreambooth_lora_sdxl", _command(base, instance_dir, out, *extra))
    keys = list(load_file(out / "pytorch_lora_weights.safetensors"))
    assert {k.split(".")[0] for k in keys} == {"unet", "text_encoder", "text_encoder_2"}
    with safe_open(out / "pytorch_lora_weights_kohya.safetensors", "pt") as f:
        kohya_keys, header = list(f.keys()), f.metadata()
    assert all(k.startswith(("lora_unet_", "lora_te1_", "lora_te2_")) for k in kohya_keys)
    assert header["modelspec.architecture"] == "stable-diffusion-xl-v1-base/lora"
    assert _checkpoints(out) == {"checkpoint-2"}
    pipe = DiffusionPipeline.from_pretrained(base)
    pipe.load_lora_weights(out)
    assert pipe("a prompt", num_inference_steps=2, output_type="np").images.shape[0] == 1
    assert "use_lora: true" in (out / "training_config.yaml").read_text()


def test_dataset_name_becomes_an_image_folder_with_captions(tmp_path, monkeypatch):
    """--dataset_name/--caption_column/--repeats (diffusers' SDXL script): the dataset is written once as images with
    caption sidecars, which the trainer reads like any --instance_data_dir."""
    import datasets
    import numpy as np
    from PIL import Image

    from hfvision.data import read_caption
    from hfvision.testing import sample_image
    from hfvision.training.dreambooth.args import parse_dreambooth_args

    monkeypatch.setenv("HFVISION_CACHE", str(tmp_path / "cache"))
    images = [sample_image(n).resize((40, 32)) for n in ("astronaut", "rocket")]
    data = datasets.Dataset.from_dict({"picture": images, "text": ["an astronaut", "a rocket"]})
    (tmp_path / "ds" / "data").mkdir(parents=True)
    data.cast_column("picture", datasets.Image()).to_parquet(tmp_path / "ds" / "data" / "train-00000-of-00001.parquet")
    argv = [
        "--pretrained_model_name_or_path",
        "base",
        "--dataset_name",
        str(tmp_path / "ds"),
        "--image_column",
        "picture",
        "--caption_column",
        "text",
        "--repeats",
        "2",
    ]
    config = parse_dreambooth_args(argv)
    folder = Path(config.instance_data_dir)
    pngs = sorted(folder.glob("*.png"))
    # each image written once; --repeats is the trainer's (DreamBoothConfig.repeats), as for any image folder
    assert [read_caption(p, "unused") for p in pngs] == ["an astronaut", "a rocket"] and config.repeats == 2
    assert np.array_equal(np.asarray(Image.open(pngs[1])), np.asarray(images[1].convert("RGB")))
    assert Path(parse_dreambooth_args(argv).instance_data_dir) == folder  # written once, reused
    with pytest.raises(ValueError, match="has no column 'caption'; its columns are picture, text"):
        parse_dreambooth_args([*argv[:6], "--caption_column", "caption"])
    with pytest.raises(ValueError, match="--caption_column only applies with --dataset_name"):
        parse_dreambooth_args(
            ["--pretrained_model_name_or_path", "b", "--instance_data_dir", "d", "--caption_column", "t"]
        )
