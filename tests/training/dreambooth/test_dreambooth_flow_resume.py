"""Flux/SD3 options that change the training math are resume-invariant: resuming with another value refuses in one
line (before any weights load for ``latest``); SD run identities do not change because these options exist. And
validation images of the flow families use the pipeline's own guidance unless ``--validation_guidance_scale`` is
given, as diffusers' Flux/SD3 scripts render theirs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from hfvision.training import DreamBoothConfig
from hfvision.training.dreambooth.config import (
    FLOW_INVARIANT_DEFAULTS,
    RESUME_INVARIANT_FIELDS,
    RUN_IDENTITY_FIELDS,
)


def _reset_accelerate():
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()


@pytest.fixture
def flux_run(flow_kwargs, train_in_process):
    """A finished 1-step Flux-dev LoRA run with its checkpoint at step 1."""
    kwargs = flow_kwargs(prior=False, max_train_steps=1, checkpointing_steps=1, use_lora=True)
    train_in_process(kwargs)
    _reset_accelerate()
    return kwargs


def test_flow_math_options_are_resume_invariant():
    assert set(FLOW_INVARIANT_DEFAULTS) <= set(RESUME_INVARIANT_FIELDS)
    for name in ("weighting_scheme", "logit_mean", "logit_std", "mode_scale", "guidance_scale"):
        assert name in RESUME_INVARIANT_FIELDS
    for name in ("max_sequence_length", "precondition_outputs", "lora_layers", "lora_blocks", "quantize_base"):
        assert name in RESUME_INVARIANT_FIELDS
    defaults = {
        f: getattr(DreamBoothConfig(pretrained_model_name_or_path="m", instance_data_dir="d"), f)
        for f in FLOW_INVARIANT_DEFAULTS
    }
    assert defaults == FLOW_INVARIANT_DEFAULTS  # the "left out of the identity" values are the real defaults


def test_sd_run_identity_is_unchanged_by_the_flow_fields():
    """Checkpoints of SD runs written before these fields were recorded keep resolving as ``latest``: the identity
    is the hash of the same options as before (the flow fields at their defaults are left out)."""
    import hashlib

    from hfvision.training.dreambooth.config import DATA_INVARIANT_DEFAULTS

    config = DreamBoothConfig(pretrained_model_name_or_path="m", instance_data_dir="d", seed=3)
    earlier_fields = [k for k in RUN_IDENTITY_FIELDS if k not in FLOW_INVARIANT_DEFAULTS]
    kept = {k: getattr(config, k) for k in earlier_fields}
    kept = {k: v for k, v in kept.items() if k not in DATA_INVARIANT_DEFAULTS or v != DATA_INVARIANT_DEFAULTS[k]}
    digest = hashlib.sha256(json.dumps(kept, sort_keys=True, default=str).encode()).hexdigest()[:16]
    assert config.run_identity() == f"{digest}-seed3"
    assert DreamBoothConfig(**{**config.to_dict(), "logit_std": 2.0}).run_identity() != config.run_identity()


CHANGES = [
    {"weighting_scheme": "logit_normal"},
    {"logit_mean": 0.5},
    {"logit_std": 2.0},
    {"mode_scale": 1.0},
    {"guidance_scale": 2.0},
    {"max_sequence_length": 64},
    {"lora_layers": "attn.to_q"},
]


def test_resume_latest_with_a_changed_flow_option_refuses(flux_run, train_in_process, monkeypatch):
    import hfvision.training.dreambooth.preparation as preparation_module

    state = json.loads((Path(flux_run["output_dir"]) / "checkpoint-1" / "trainer_state.json").read_text())
    monkeypatch.setattr(preparation_module, "load_base_pipeline", lambda *a, **k: pytest.fail("weights loaded"))
    for change in CHANGES:
        ((name, value),) = change.items()
        old = state["config"][name]
        assert old != value
        with pytest.raises(ValueError) as info:
            train_in_process({**flux_run, **change, "max_train_steps": 2, "resume_from_checkpoint": "latest"})
        _reset_accelerate()
        message = str(info.value)
        assert "\n" not in message
        assert f"belong to another run ({name} was {old!r} and is now {value!r})" in message


def test_resume_from_a_named_checkpoint_with_a_changed_option_refuses(flux_run):
    """The check that runs for an explicit checkpoint folder (in another output folder) names the option too."""
    from hfvision.training.dreambooth.checkpointing import check_resumable, read_trainer_state

    checkpoint = Path(flux_run["output_dir"]) / "checkpoint-1"
    state = read_trainer_state(checkpoint)
    config = DreamBoothConfig(**{**flux_run, "weighting_scheme": "mode"})
    config.guidance_scale, config.max_sequence_length = state["config"]["guidance_scale"], 512  # as filled for dev
    with pytest.raises(ValueError, match=r"^cannot resume from .*: weighting_scheme was 'none' and is now 'mode'$"):
        check_resumable(checkpoint, state, config, 1, state["micro_batches_per_epoch"])
    same = DreamBoothConfig(**{**flux_run, "weighting_scheme": "none"})
    same.guidance_scale, same.max_sequence_length = state["config"]["guidance_scale"], 512
    check_resumable(checkpoint, state, same, 1, state["micro_batches_per_epoch"])


# --- validation guidance ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("family, default", [("flux", 3.5), ("sd3", 7.0)])
def test_validation_uses_the_pipelines_default_guidance(family, default):
    """``validation_guidance_scale=None`` (the default) renders what the stock pipeline renders with no guidance
    argument (diffusers' scripts pass only the prompt): Flux-dev's embedding 3.5, SD3's CFG 7.0, not the SD 7.5."""
    from hfvision.testing import tiny_flux_pipeline, tiny_sd3_pipeline
    from hfvision.training.dreambooth.validation import render_validation

    assert DreamBoothConfig(pretrained_model_name_or_path="m", instance_data_dir="d").validation_guidance_scale is None
    pipe = tiny_flux_pipeline("dev") if family == "flux" else tiny_sd3_pipeline()
    pipe.set_progress_bar_config(disable=True)

    def render(guidance):
        return np.asarray(render_validation(pipe, ["a photo of sks dog"], 1, 0, 32, 2, guidance)[0][0])

    default_images = render(None)
    np.testing.assert_array_equal(default_images, render(default))
    assert not np.array_equal(default_images, render(7.5))  # --validation_guidance_scale wins when given
