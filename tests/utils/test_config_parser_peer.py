"""``parse_config`` builds the flags transformers' ``HfArgumentParser`` builds, for every hfvision config class.

The flags are generated in hfvision (importing transformers costs ~1.2 s, more than a usage error may take); these
tests keep the two in step: the same option strings, types, defaults, nargs, choices and required flags, and the same
parsed values for sample command lines.
"""

from __future__ import annotations

import argparse

import pytest

from hfvision.utils.config_parser import add_dataclass_flags


def _config_classes():
    from hfvision.data.prepare import PrepareOptions
    from hfvision.serving.config import ServeConfig
    from hfvision.serving.ray_serve import RayServeOptions
    from hfvision.training.classification import ImageClassificationConfig
    from hfvision.training.dreambooth.args import DiffusersScriptFlags
    from hfvision.training.dreambooth.config import DreamBoothConfig
    from hfvision.ui.app import UIConfig

    return [
        ServeConfig,
        RayServeOptions,
        UIConfig,
        PrepareOptions,
        DreamBoothConfig,
        DiffusersScriptFlags,
        ImageClassificationConfig,
    ]


def _describe(action: argparse.Action) -> dict:
    kind = action.type
    return {
        "options": action.option_strings,
        "dest": action.dest,
        "kind": type(action).__name__,
        # the bool and choice converters are functions of each library: compare what they do
        "type": kind if isinstance(kind, type) or kind is None else kind.__name__.replace("make_choice_type_", ""),
        "default": action.default,
        "nargs": action.nargs,
        "const": action.const,
        "choices": list(action.choices) if action.choices is not None else None,
        "required": action.required,
    }


@pytest.mark.parametrize("index", range(7))
def test_same_flags_as_hf_argument_parser(index):
    from transformers import HfArgumentParser

    cls = _config_classes()[index]
    ours = argparse.ArgumentParser()
    actions = add_dataclass_flags(ours, cls)
    peer = [a for a in HfArgumentParser(cls)._actions if a.dest != "help"]
    assert len(actions) == len(peer) > 0
    for mine, theirs in zip(actions, peer):
        a, b = _describe(mine), _describe(theirs)
        b["type"] = {"string_to_bool": "string_to_bool", "<lambda>": "choice"}.get(b["type"], b["type"])
        b["options"] = list(dict.fromkeys(b["options"]))  # an alias equal to a generated flag: listed once
        assert a == b, mine.dest


def test_same_configs_as_hf_argument_parser_for_sample_command_lines():
    from transformers import HfArgumentParser

    from hfvision.serving.config import ServeConfig
    from hfvision.training.classification import ImageClassificationConfig
    from hfvision.training.dreambooth.config import DreamBoothConfig
    from hfvision.utils.config_parser import parse_config

    samples = {
        ServeConfig: ["--task", "text-to-image", "--model", "x", "--max-batch-size", "8", "--onnx", "--port", "0"],
        DreamBoothConfig: [
            *("--pretrained_model_name_or_path", "m", "--instance_data_dir", "d", "--train_text_encoder"),
            *("--validation_prompt", "a dog", "a cat", "--mixed_precision", "bf16", "--use_lora", "true"),
            *("--rank", "8", "--lr_scheduler", "cosine", "--checkpointing_steps", "3"),
        ],
        ImageClassificationConfig: [
            *("--model", "m", "--data", "d", "--epochs", "2", "--no_augment", "--eval_strategy", "steps"),
            *("--lora", "--lora_target_modules", "query", "value", "--bad_images", "error", "--output_dir", "o"),
        ],
    }
    for cls, argv in samples.items():
        (theirs,) = HfArgumentParser(cls).parse_args_into_dataclasses(argv)
        assert parse_config(cls, argv) == theirs, cls.__name__
