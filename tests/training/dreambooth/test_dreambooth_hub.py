"""Hub integration through the local Hub server: a Hub-backed session resumes on a "fresh machine" to the same
weights as an uninterrupted run; `hfvision train dreambooth --config tiny.yaml --push_to_hub` uploads the model."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"
N = 2


@pytest.mark.hub
@pytest.mark.slow
def test_hub_session_survives_losing_the_machine(
    tiny_kwargs, run_training, local_hub, tmp_path, load_weights, assert_bit_identical, run_python
):
    from hfvision.testing import hub_env

    env = hub_env(local_hub.endpoint)
    common = tiny_kwargs(
        max_train_steps=2 * N,
        checkpointing_steps=N,
        train_text_encoder=True,
        instance_data_dir=None,
        resolution=32,
        class_data_dir=None,
    )
    photos = tiny_kwargs()["instance_data_dir"]

    # reference: the same session trained without interruption (local only)
    straight = {
        **common,
        "session": "subject",
        "session_root": str(tmp_path / "local"),
        "instance_data_dir": photos,
        "output_dir": str(tmp_path / "straight"),
    }
    run_training(straight)

    # machine 1: photos go into a Hub-backed session; killed right after checkpoint N reached the Hub
    hub = {
        **common,
        "hub_session": "user/subject",
        "session_root": str(tmp_path / "machine"),
        "output_dir": str(tmp_path / "hub-out"),
    }
    returncode, _, stderr = run_training({**hub, "instance_data_dir": photos}, kill_at=N + 1, env=env)
    assert returncode == -signal.SIGKILL, stderr[-3000:]
    files = json.loads(
        run_python(
            """
        import json
        from huggingface_hub import HfApi
        print(json.dumps(HfApi().list_repo_files("user/subject")))
    """,
            hub=local_hub,
        )
        .strip()
        .splitlines()[-1]
    )
    assert "session.json" in files and any(f.startswith(f"checkpoints/checkpoint-{N}/unet/") for f in files)

    # machine 2: nothing local, same command (the session's photos come from the Hub) -> resumes at step N
    shutil.rmtree(tmp_path / "machine")
    shutil.rmtree(tmp_path / "hub-out")
    _, logs, stderr = run_training(hub, env=env)
    assert [r["step"] for r in logs if "step" in r] == list(range(N + 1, 2 * N + 1)), stderr[-3000:]
    assert_bit_identical(load_weights(tmp_path / "straight"), load_weights(tmp_path / "hub-out"))
    session = json.loads((tmp_path / "machine" / "subject" / "session.json").read_text())
    assert session["status"] == "trained" and session["runs"][-1]["steps"] == 2 * N


@pytest.mark.hub
def test_cli_with_the_example_config_pushes_to_the_hub(
    tiny_model_dir, instance_dir, local_hub, tmp_path, subprocess_env, run_python
):
    """The README command: `hfvision train dreambooth --config examples/configs/tiny.yaml` (+ flags that win)."""
    from hfvision.testing import hub_env

    (tmp_path / "tiny-sd1").symlink_to(tiny_model_dir("sd1"))
    (tmp_path / "tiny-photos").symlink_to(instance_dir)
    cmd = [
        sys.executable,
        "-m",
        "hfvision.cli.main",
        "train",
        "dreambooth",
        "--config",
        str(EXAMPLES / "configs" / "tiny.yaml"),
        "--max_train_steps",
        "2",
        "--checkpointing_steps",
        "2",
        "--text_encoder_steps",
        "1",
        "--validation_steps",
        "2",
        "--num_class_images",
        "2",
        "--report_to",
        "none",
        "--resolution",
        "32",
        "--push_to_hub",
        "--hub_model_id",
        "user/tiny-dreambooth",
    ]
    proc = subprocess.run(
        cmd,
        cwd=tmp_path,
        env={**subprocess_env, **hub_env(local_hub.endpoint)},
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "trained 2 steps" in proc.stdout
    out = tmp_path / "tiny-dreambooth"
    from hfvision.training import DreamBoothConfig

    config = DreamBoothConfig.from_yaml(out / "training_config.yaml")
    assert (config.max_train_steps, config.text_encoder_steps, config.learning_rate) == (2, 1, 1e-4)
    listing = json.loads(
        run_python(
            """
        import json
        from huggingface_hub import HfApi, ModelCard
        api = HfApi()
        card = ModelCard.load("user/tiny-dreambooth")
        print(json.dumps({"files": api.list_repo_files("user/tiny-dreambooth"), "private": api.model_info(
            "user/tiny-dreambooth").private, "instance_prompt": card.data.instance_prompt}))
    """,
            hub=local_hub,
        )
        .strip()
        .splitlines()[-1]
    )
    files = set(listing["files"])
    assert {
        "model_index.json",
        "unet/diffusion_pytorch_model.safetensors",
        "README.md",
        "training_config.yaml",
        "samples.png",
    } <= files
    assert not any(f.startswith(("checkpoint-", "logs/")) for f in files)
    assert listing["private"] is True and listing["instance_prompt"] == "a photo of sks person"
