"""DreamBoothConfig: diffusers flag names, validation messages, YAML + flag precedence, generated CLI."""

from __future__ import annotations

import dataclasses

import pytest
import yaml

from hfvision.training import DreamBoothConfig, parse_dreambooth_args
from hfvision.training.dreambooth.args import build_argument_parser
from hfvision.training.dreambooth.config import LR_SCHEDULERS

REQUIRED = {"pretrained_model_name_or_path": "base", "instance_data_dir": "photos"}

# The flags diffusers' train_dreambooth.py users type, with values: they must work unchanged.
DIFFUSERS_COMMAND = """--pretrained_model_name_or_path runwayml/stable-diffusion-v1-5 --revision main
--instance_data_dir photos --instance_prompt a_photo_of_sks_dog --class_data_dir class --class_prompt a_photo_of_dog
--with_prior_preservation --prior_loss_weight 0.5 --num_class_images 50 --resolution 512 --center_crop
--train_batch_size 2 --max_train_steps 800 --learning_rate 2e-6 --lr_scheduler cosine --lr_warmup_steps 10
--train_text_encoder --gradient_accumulation_steps 2 --gradient_checkpointing --mixed_precision bf16 --use_8bit_adam
--snr_gamma 5.0 --checkpointing_steps 200 --checkpoints_total_limit 3 --resume_from_checkpoint latest
--validation_prompt a_photo_of_sks_dog_on_the_moon --validation_steps 50 --report_to tensorboard --seed 7
--output_dir out --push_to_hub --hub_model_id me/dog""".split()


def test_diffusers_command_line_parses_unchanged():
    config = parse_dreambooth_args(DIFFUSERS_COMMAND)
    assert config.pretrained_model_name_or_path == "runwayml/stable-diffusion-v1-5"
    assert config.with_prior_preservation and config.center_crop and config.train_text_encoder
    assert config.gradient_checkpointing and config.use_8bit_adam and config.push_to_hub
    assert (config.prior_loss_weight, config.num_class_images, config.learning_rate) == (0.5, 50, 2e-6)
    assert (config.lr_scheduler, config.mixed_precision, config.snr_gamma) == ("cosine", "bf16", 5.0)
    assert config.validation_prompt == ["a_photo_of_sks_dog_on_the_moon"]
    assert (config.checkpoints_total_limit, config.resume_from_checkpoint, config.seed) == (3, "latest", 7)


def test_every_field_has_a_flag_and_help():
    parser = build_argument_parser()
    flags = {opt for action in parser._actions for opt in action.option_strings}
    for f in dataclasses.fields(DreamBoothConfig):
        assert f"--{f.name}" in flags, f.name
        assert f.metadata.get("help"), f"{f.name} has no help text"
    for new in (
        "--text_encoder_steps",
        "--text_encoder_lr",
        "--use_lora",
        "--rank",
        "--noise_offset",
        "--session",
        "--hub_session",
        "--config",
    ):
        assert new in flags


def test_yaml_sets_options_and_flags_win(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                **REQUIRED,
                "max_train_steps": 50,
                "learning_rate": 1e-4,
                "use_lora": True,
                "validation_prompt": "a photo of {token}",
            }
        )
    )
    config = parse_dreambooth_args(["--config", str(path), "--max_train_steps", "7", "--rank", "8"])
    assert (config.max_train_steps, config.learning_rate, config.use_lora, config.rank) == (7, 1e-4, True, 8)
    assert config.validation_prompt == ["a photo of {token}"]
    assert config.lora_alpha == 8  # defaults to the rank


def test_yaml_round_trip_and_unknown_keys(tmp_path):
    config = DreamBoothConfig(**REQUIRED, use_lora=True, rank=16, validation_prompt=["a", "b"], text_encoder_lr=None)
    path = config.to_yaml(tmp_path / "training_config.yaml")
    assert DreamBoothConfig.from_yaml(path) == config
    path.write_text(yaml.safe_dump({**REQUIRED, "learning_rat": 1e-4}))
    with pytest.raises(ValueError, match="unknown option 'learning_rat'; did you mean 'learning_rate'"):
        parse_dreambooth_args(["--config", str(path)])
    path.write_text("- a list")
    with pytest.raises(ValueError, match="must hold a mapping"):
        DreamBoothConfig.from_yaml(path)


def test_lr_scheduler_choices_are_diffusers_names():
    from diffusers.optimization import SchedulerType

    assert set(LR_SCHEDULERS) == {s.value for s in SchedulerType}


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"pretrained_model_name_or_path": None}, "pretrained_model_name_or_path is required"),
        ({"instance_data_dir": None}, "instance_data_dir is required"),
        ({"resolution": 500}, "resolution=500 must be a positive multiple of 8; try 504 or 496"),
        ({"class_prompt": "a dog"}, "class_prompt='a dog' is set but prior preservation is off"),
        ({"with_prior_preservation": True}, "with_prior_preservation needs --class_prompt"),
        (
            {"train_text_encoder": True, "text_encoder_steps": 500},
            "text_encoder_steps=500 exceeds max_train_steps=400",
        ),
        ({"text_encoder_steps": 10}, "text_encoder_steps=10 needs --train_text_encoder"),
        ({"text_encoder_lr": 1e-6}, "text_encoder_lr=1e-06 needs --train_text_encoder"),
        ({"rank": 8}, "rank=8 only applies with --use_lora"),
        ({"merge_lora": True}, "merge_lora only applies with --use_lora"),
        ({"use_lora": True, "rank": 0}, "rank=0 must be an integer >= 1"),
        ({"cache_latents": True, "random_flip": True}, "cannot be combined with random_flip"),
        ({"train_text_encoder": True, "pre_compute_text_embeddings": True}, "needs a frozen text encoder"),
        ({"learning_rate": 0}, "learning_rate=0 must be > 0"),
        ({"max_train_steps": 0}, "max_train_steps=0 must be an integer >= 1"),
        ({"mixed_precision": "fp8"}, "mixed_precision='fp8' must be one of no, fp16, bf16"),
        ({"lr_scheduler": "cosin"}, "lr_scheduler='cosin' is not one of"),
        ({"snr_gamma": -1.0}, "snr_gamma=-1.0 must be > 0"),
        ({"hub_session": "just-a-name"}, "hub_session='just-a-name' must look like 'user/repo'"),
    ],
)
def test_bad_values_are_refused_with_the_value_and_the_fix(overrides, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)").replace("+", r"\+")):
        DreamBoothConfig(**{**REQUIRED, **overrides})


def test_prompts_expand_the_token():
    config = DreamBoothConfig(**REQUIRED, instance_token="zwx", instance_prompt="a photo of {token} dog")
    assert config.resolved_instance_prompt == "a photo of zwx dog"
    assert DreamBoothConfig(**REQUIRED).resolved_instance_prompt == "a photo of sks"
