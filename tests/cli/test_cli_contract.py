"""The command-line contract, driven by a hostile corpus through every subcommand.

For every case: the exit code (2 for a usage error, 1 for any other failure), exactly one line on stderr starting
with ``hfvision <command>``, a failure within a generous time bound, and every file that existed before is
byte-identical afterwards (and no file appeared). Cases run in-process through ``hfvision.cli.main.main`` (no
interpreter start-up); a few run as subprocesses to check the real console behaviour.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hfvision.cli.main import main

TIME_LIMIT = 10.0  # seconds: generous (a busy 2-core machine); the checks themselves take milliseconds


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, tiny_model_dir):
    """A folder of bad inputs, incomplete models and existing outputs; built once per module."""
    from safetensors.numpy import save_file

    from hfvision.testing import sample_image

    root = tmp_path_factory.mktemp("hostile")
    vit, sd1 = Path(tiny_model_dir("vit")), Path(tiny_model_dir("sd1"))
    # images: one good, a zero-byte file, a text file named .png
    sample_image("astronaut").resize((64, 64)).save(root / "good.png")
    (root / "zero.jpg").write_bytes(b"")
    (root / "fake.png").write_text("this is not an image\n")
    photos = root / "photos"
    photos.mkdir()
    shutil.copy(root / "good.png", photos / "a.png")
    shutil.copy(root / "fake.png", photos / "b.png")
    # incomplete / corrupt classifier folders
    for name in ("vit_no_weights", "vit_no_preproc", "vit_corrupt", "vit_truncated"):
        shutil.copytree(vit, root / name)
    (root / "vit_no_weights" / "model.safetensors").unlink()
    (root / "vit_no_preproc" / "preprocessor_config.json").unlink()
    _pickle_only_copy(vit, root / "vit_pickle")
    (root / "vit_corrupt" / "model.safetensors").write_bytes(b"\xff" * 64)
    data = (vit / "model.safetensors").read_bytes()
    (root / "vit_truncated" / "model.safetensors").write_bytes(data[: len(data) // 2])
    # a Stable Diffusion folder without unet/, single files: empty, garbage, valid
    shutil.copytree(sd1, root / "sd_no_unet", ignore=shutil.ignore_patterns("unet"))
    (root / "zero.safetensors").write_bytes(b"")
    (root / "garbage.safetensors").write_bytes(os.urandom(256))
    import numpy as np

    save_file({"x": np.zeros(4, dtype=np.float32)}, str(root / "valid.safetensors"))
    # existing outputs
    (root / "existing.jsonl").write_text('{"file": "keep me"}\n')
    shutil.copy(root / "good.png", root / "existing.png")
    (root / "existing.safetensors").write_bytes(b"keep me")
    (root / "nonempty").mkdir()
    (root / "nonempty" / "keep.txt").write_text("keep me")
    (root / "outdir").mkdir()
    # a two-class imagefolder for train classifier
    for label in ("female", "male"):
        (root / "faces" / label).mkdir(parents=True)
        shutil.copy(root / "good.png", root / "faces" / label / "a.png")
    return {"root": root, "vit": vit, "sd1": sd1}


def _pickle_only_copy(src: Path, dst: Path) -> Path:
    """A copy of a tiny model folder whose weights are a pickle (pytorch_model.bin) instead of safetensors."""
    import torch
    from safetensors.torch import load_file

    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("*.safetensors"))
    torch.save(load_file(src / "model.safetensors"), dst / "pytorch_model.bin")
    return dst


@pytest.fixture(scope="module")
def taken_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(1)
        yield sock.getsockname()[1]


def _snapshot(*folders: Path) -> dict[str, str]:
    files = {}
    for folder in folders:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                files[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
            elif path.is_dir():
                files[str(path)] = "<dir>"
    return files


def _run(argv: list[str], capsys) -> tuple[int, str, float]:
    start = time.perf_counter()
    try:
        code = main(argv)
    except SystemExit as exit_:  # argparse usage errors and --help
        code = exit_.code
    elapsed = time.perf_counter() - start
    return code, capsys.readouterr().err, elapsed


CLASSIFY = ["classify", "--model", "{vit}", "--input", "{root}/good.png", "--output", "{root}/new.jsonl"]
GENERATE = ["generate", "--model", "{sd1}", "--prompt", "a photo", "--out", "{root}/new.png", "--steps", "2"]
TRAIN = ["train", "classifier", "--model", "{vit}", "--data", "{root}/faces", "--output-dir", "{root}/trained"]
TO_SINGLE, FROM_SINGLE, LORA = ["convert", "to-single-file"], ["convert", "from-single-file"], ["convert", "lora"]
VALID, NEW, KOHYA = "{root}/valid.safetensors", "{root}/new.safetensors", ["--to", "kohya"]
NOT_SAFETENSORS, NOPE = "not a valid safetensors file", "{root}/nope.safetensors"


def _model(command: list[str], model: str) -> list[str]:
    """``command`` (CLASSIFY or GENERATE) with another --model."""
    return [command[0], "--model", model, *command[3:]]


# (id, argv, exit code, text the one stderr line must contain)
CASES = [
    # classify
    ("classify-missing-input", [*CLASSIFY[:4], "{root}/nope", *CLASSIFY[5:]], 1, "--input {root}/nope"),
    ("classify-top-k-zero", [*CLASSIFY, "--top-k", "0"], 2, "--top-k"),
    ("classify-top-k-text", [*CLASSIFY, "--top-k", "many"], 2, "--top-k"),
    ("classify-batch-size-zero", [*CLASSIFY, "--batch-size", "0"], 2, "--batch-size"),
    ("classify-negative-margin", [*CLASSIFY, "--face-margin", "-1"], 2, "--face-margin"),
    ("classify-bogus-task", [*CLASSIFY, "--task", "bogus"], 2, "gender-classification"),
    ("classify-existing-output", [*CLASSIFY[:6], "{root}/existing.jsonl"], 1, "--overwrite"),
    ("classify-output-is-folder", [*CLASSIFY[:6], "{root}/outdir"], 1, "is a folder"),
    ("classify-no-weights", _model(CLASSIFY, "{root}/vit_no_weights"), 1, "no weights"),
    ("classify-no-preprocessor", _model(CLASSIFY, "{root}/vit_no_preproc"), 1, "preprocessor_config.json"),
    ("classify-corrupt-weights", _model(CLASSIFY, "{root}/vit_corrupt"), 1, NOT_SAFETENSORS),
    ("classify-truncated-weights", _model(CLASSIFY, "{root}/vit_truncated"), 1, "truncated"),
    ("classify-model-is-file", _model(CLASSIFY, "{root}/good.png"), 1, "is a file"),
    ("classify-missing-model-path", _model(CLASSIFY, "./no/such/model"), 1, "no such folder"),
    ("classify-hub-model-offline", _model(CLASSIFY, "someone/not-cached"), 1, "needs the Hugging Face Hub"),
    (
        "classify-image-classification-needs-model",
        ["classify", "--task", "image-classification", *CLASSIFY[3:]],
        2,
        "--model",
    ),
    ("classify-strict-fake-image", [*CLASSIFY[:4], "{root}/photos", *CLASSIFY[5:], "--strict"], 1, "--strict"),
    ("classify-strict-zero-byte", [*CLASSIFY[:4], "{root}/zero.jpg", *CLASSIFY[5:], "--strict"], 1, "zero.jpg"),
    ("classify-verify-local-folder", [*CLASSIFY, "--verify"], 2, "drop --verify"),
    ("classify-missing-required", ["classify", "--input", "{root}/good.png"], 2, "--output"),
    ("classify-dataset-with-output", [*CLASSIFY[:3], "--dataset", "{root}/photos", *CLASSIFY[5:]], 2, "--dataset"),
    ("classify-pickle-model", _model(CLASSIFY, "{root}/vit_pickle"), 1, "--allow-pickle"),
    # generate
    ("generate-negative-steps", [*GENERATE[:-1], "-5"], 2, "--steps"),
    ("generate-zero-height", [*GENERATE, "--height", "0"], 2, "--height"),
    ("generate-width-not-multiple", [*GENERATE, "--width", "100"], 2, "try 96 or 104"),
    ("generate-gif", [*GENERATE[:6], "{root}/x.gif"], 2, ".png, .jpg or .webp"),
    ("generate-controlnet-without-image", [*GENERATE, "--controlnet", "canny"], 2, "--control-image"),
    ("generate-image-without-controlnet", [*GENERATE, "--control-image", "{root}/good.png"], 2, "--controlnet"),
    (
        "generate-fake-control-image",
        [*GENERATE, "--controlnet", "canny", "--control-image", "{root}/fake.png"],
        1,
        "--control-image",
    ),
    ("generate-existing-output", [*GENERATE[:6], "{root}/existing.png"], 1, "--overwrite"),
    ("generate-sd-without-unet", _model(GENERATE, "{root}/sd_no_unet"), 1, "unet/"),
    ("generate-zero-byte-file", _model(GENERATE, "{root}/zero.safetensors"), 1, "empty"),
    ("generate-garbage-file", _model(GENERATE, "{root}/garbage.safetensors"), 1, NOT_SAFETENSORS),
    ("generate-registry-key-offline", _model(GENERATE, "sd15"), 1, "needs the Hugging Face Hub"),
    ("generate-unknown-key", _model(GENERATE, "sd1.5"), 1, "did you mean 'sd15'"),
    (
        "generate-controlnet-offline",
        [*GENERATE, "--controlnet", "canny", "--control-image", "{root}/good.png"],
        1,
        "--controlnet canny (lllyasviel/",
    ),
    (
        "generate-controlnet-unknown",
        [*GENERATE, "--controlnet", "paint", "--control-image", "{root}/good.png"],
        2,
        "no ControlNet 'paint'",
    ),
    ("generate-guidance-text", [*GENERATE, "--guidance-scale", "high"], 2, "--guidance-scale"),
    # convert
    ("convert-existing-output", [*TO_SINGLE, "{sd1}", "{root}/existing.safetensors"], 1, "--overwrite"),
    ("convert-pickle-output", [*TO_SINGLE, "{sd1}", "{root}/new.ckpt"], 2, "--allow-pickle"),
    ("convert-incomplete-pipeline", [*TO_SINGLE, "{root}/sd_no_unet", "{root}/new.safetensors"], 1, "unet/"),
    ("convert-missing-pipeline", [*TO_SINGLE, "{root}/nope", "{root}/new.safetensors"], 1, "no such folder"),
    ("convert-garbage-file", [*FROM_SINGLE, "{root}/garbage.safetensors", "{root}/newdir"], 1, NOT_SAFETENSORS),
    ("convert-zero-byte-file", [*FROM_SINGLE, "{root}/zero.safetensors", "{root}/newdir"], 1, "empty"),
    ("convert-existing-folder", [*FROM_SINGLE, "{root}/valid.safetensors", "{root}/nonempty"], 1, "--overwrite"),
    ("convert-lora-missing-input", [*LORA, NOPE, NEW, *KOHYA], 1, f"IN {NOPE} does not exist"),
    ("convert-lora-garbage-input", [*LORA, "{root}/garbage.safetensors", NEW, *KOHYA], 1, NOT_SAFETENSORS),
    ("convert-lora-existing-output", [*LORA, VALID, "{root}/existing.safetensors", *KOHYA], 1, "--overwrite"),
    ("convert-bad-metadata", [*TO_SINGLE, "{sd1}", NEW, "--metadata", "novalue"], 2, "KEY=VALUE"),
    ("convert-lora-pickle-output", [*LORA, VALID, "{root}/new.bin", *KOHYA], 2, "must end in .safetensors"),
    ("convert-lora-bad-metadata", [*LORA, VALID, NEW, *KOHYA, "--metadata", "k"], 2, "KEY=VALUE"),
    ("convert-lora-no-layout", [*LORA, VALID, NEW], 2, "--to"),
    # eval
    (
        "eval-missing-photos",
        [
            "eval",
            "dreambooth",
            "{sd1}",
            "--instance_data_dir",
            "{root}/nope",
            "--prompts",
            "{root}/existing.jsonl",
            "--output",
            "{root}/eval.json",
        ],
        2,
        "--instance-data-dir",
    ),
    (
        "eval-steps-text",
        [
            "eval",
            "dreambooth",
            "{sd1}",
            "--instance_data_dir",
            "{root}/photos",
            "--prompts",
            "{root}/existing.jsonl",
            "--num_inference_steps",
            "many",
        ],
        2,
        "--num_inference_steps",
    ),
    # export
    ("export-existing-folder", ["export", "onnx", "{vit}", "{root}/nonempty"], 1, "--overwrite"),
    ("export-no-weights", ["export", "onnx", "{root}/vit_no_weights", "{root}/newdir"], 1, "no weights"),
    (
        "export-push-offline",
        ["export", "onnx", "{vit}", "{root}/newdir", "--push-to-hub", "me/x"],
        1,
        "needs the Hugging Face Hub",
    ),
    ("export-pickle-source", ["export", "onnx", "{root}/vit_pickle", "{root}/newdir"], 1, "--allow-pickle"),
    ("export-opset-zero", ["export", "onnx", "{vit}", "{root}/newdir", "--opset", "0"], 2, "--opset"),
    # serve
    ("serve-taken-port", ["serve", "--model", "{vit}", "--port", "{port}"], 1, "--port {port}"),
    ("serve-zero-batch", ["serve", "--model", "{vit}", "--max-batch-size", "0"], 2, "--max-batch-size 0"),
    ("serve-port-text", ["serve", "--model", "{vit}", "--port", "http"], 2, "--port"),
    ("serve-no-weights", ["serve", "--model", "{root}/vit_no_weights", "--port", "0"], 1, "no weights"),
    ("serve-text-to-image-needs-model", ["serve", "--task", "text-to-image"], 2, "--model"),
    ("serve-ray-flag-without-ray", ["serve", "--model", "{vit}", "--replicas", "2"], 2, "add --backend ray"),
    ("serve-pickle-model", ["serve", "--model", "{root}/vit_pickle", "--port", "0"], 1, "--allow-pickle"),
    # ui
    ("ui-taken-port", ["ui", "--port", "{port}"], 1, "--port {port}"),
    ("ui-zero-steps", ["ui", "--steps", "0"], 2, "--steps"),
    ("ui-pickle-classifier", ["ui", "--classifier", "{root}/vit_pickle", "--port", "0"], 1, "--allow-pickle"),
    ("ui-incomplete-model", ["ui", "--model", "{root}/sd_no_unet", "--port", "0"], 1, "unet/"),
    # data
    ("data-missing-source", ["data", "prepare", "{root}/nope", "{root}/prepared"], 1, "no such folder"),
    ("data-bad-size", ["data", "prepare", "{root}/photos", "{root}/prepared", "--size", "500"], 2, "--size 500"),
    ("data-size-text", ["data", "prepare", "{root}/photos", "{root}/prepared", "--size", "big"], 2, "--size"),
    ("data-strict-fake-image", ["data", "prepare", "{root}/photos", "{root}/prepared", "--strict"], 1, "b.png"),
    (
        "data-existing-report",
        ["data", "prepare", "{root}/photos", "{root}/prepared", "--report", "{root}/existing.jsonl"],
        1,
        "--overwrite",
    ),
    ("data-destination-is-file", ["data", "prepare", "{root}/photos", "{root}/existing.png"], 1, "is a file"),
    # session
    ("session-status-missing", ["session", "status", "nope", "--root", "{root}/sessions"], 1, "session create nope"),
    ("session-root-is-file", ["session", "create", "x", "--root", "{root}/existing.jsonl"], 1, "--root"),
    ("session-bad-set", ["session", "create", "x", "--root", "{root}/sessions", "--set", "novalue"], 2, "KEY=VALUE"),
    # train
    ("train-existing-run", [*TRAIN[:-1], "{root}/vit_no_preproc"], 1, "--overwrite_output_dir"),
    ("train-negative-epochs", [*TRAIN, "--epochs", "-1"], 2, "--epochs"),
    ("train-epochs-text", [*TRAIN, "--epochs", "three"], 2, "--epochs"),
    ("train-missing-data-path", [*TRAIN[:5], "./nope", *TRAIN[6:]], 1, "--data ./nope: no such folder"),
    ("train-hub-data-offline", [*TRAIN[:5], "someone/faces", *TRAIN[6:]], 1, "needs the Hugging Face Hub"),
    ("train-data-is-file", [*TRAIN[:5], "{root}/good.png", *TRAIN[6:]], 1, "is a file"),
    ("train-no-weights", [*TRAIN[:2], "--model", "{root}/vit_no_weights", *TRAIN[4:]], 1, "no weights"),
    ("train-unknown-yaml", [*TRAIN, "--config", "{root}/nope.yaml"], 1, "does not exist"),
    (
        "dreambooth-existing-output",
        [
            "train",
            "dreambooth",
            "--pretrained_model_name_or_path",
            "{sd1}",
            "--instance_data_dir",
            "{root}/photos",
            "--instance_prompt",
            "a photo of sks dog",
            "--output_dir",
            "{root}/nonempty",
        ],
        1,
        "--overwrite",
    ),
    # demo
    ("demo-existing-output", ["demo", "--output", "{root}/nonempty"], 1, "--overwrite"),
    ("demo-output-is-file", ["demo", "--output", "{root}/existing.png"], 1, "is a file"),
    # models, the top level
    ("models-bad-base", ["models", "list", "--controlnets", "sd9"], 2, "--controlnets sd9"),
    ("unknown-command", ["paint"], 2, "hfvision: error: argument COMMAND: invalid choice: 'paint'"),
    ("unknown-flag", ["env", "--colour"], 2, "--colour"),
]


@pytest.mark.parametrize("case_id, argv, code, text", CASES, ids=[c[0] for c in CASES])
def test_hostile_input_fails_fast_with_one_line_and_touches_nothing(
    case_id, argv, code, text, corpus, taken_port, capsys
):
    if case_id == "classify-cuda" and _has_cuda():
        pytest.skip("this machine has a GPU")
    values = {"root": str(corpus["root"]), "vit": str(corpus["vit"]), "sd1": str(corpus["sd1"]), "port": taken_port}
    argv = [a.format(**values) for a in argv]
    folders = (corpus["root"], corpus["vit"], corpus["sd1"])
    before = _snapshot(*folders)
    exit_code, err, elapsed = _run(argv, capsys)
    assert exit_code == code, err
    lines = err.strip().splitlines()
    prefix = "hfvision" if case_id == "unknown-command" else f"hfvision {argv[0]}"
    assert len(lines) == 1 and lines[0].startswith(prefix), err
    assert text.format(**values) in lines[0]
    assert "Error:" not in lines[0] and "=True" not in lines[0] and "Traceback" not in err
    assert elapsed < TIME_LIMIT
    assert _snapshot(*folders) == before  # nothing written, nothing changed


def _has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def test_device_without_gpu_is_one_line(corpus, capsys):
    if _has_cuda():
        pytest.skip("this machine has a GPU")
    argv = [a.format(root=corpus["root"], vit=corpus["vit"]) for a in [*CLASSIFY, "--device", "cuda"]]
    code, err, _ = _run(argv, capsys)
    assert (
        code == 1
        and err.strip()
        == "hfvision classify: error: --device cuda: no CUDA GPU is available on this machine; use --device cpu"
    )


def test_overwrite_replaces_existing_output_and_the_run_is_quiet(corpus, tmp_path, capsys):
    """With --overwrite an existing JSONL is replaced (atomically); without TTY nothing but results reach stderr."""
    out = tmp_path / "preds.jsonl"
    out.write_text("old\n")
    argv = [
        "classify",
        "--model",
        str(corpus["vit"]),
        "--input",
        str(corpus["root"] / "photos"),
        "--output",
        str(out),
        "--no-progress",
        "--overwrite",
        "--top-k",
        "1",
    ]
    code, err, _ = _run(argv, capsys)
    assert code == 0
    lines = out.read_text().splitlines()
    assert len(lines) == 2 and '"predictions"' in lines[0] and '"error"' in lines[1]
    # the one bad image is skipped with one warning; nothing else (no load report, bars, ANSI codes)
    assert err.strip().splitlines() == [
        f"skipping {corpus['root'] / 'photos' / 'b.png'}: " + lines[1].split('"error": "')[1].split('"')[0]
    ]
    assert not list(tmp_path.glob(".preds.jsonl.*"))  # no temporary file left


def test_python_words_become_flags():
    from hfvision.cli._checks import in_cli_words

    assert in_cli_words("out exists; choose another name or pass overwrite=True") == (
        "out exists; choose another name or add --overwrite"
    )
    assert in_cli_words("task 'x' has no default model in hfvision; pass model=<Hub id or folder>").endswith(
        "pass --model <Hub id or folder>"
    )


def _python(args: list[str], env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "hfvision.cli.main", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=timeout,
    )


def test_console_usage_error_is_fast_and_one_line(corpus):
    start = time.perf_counter()
    result = _python(["classify", "--input", str(corpus["root"]), "--output", "x.jsonl", "--top-k", "0"])
    elapsed = time.perf_counter() - start
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.strip().splitlines() == [
        "hfvision classify: error: argument --top-k: '0' must be an integer > 0 (see `hfvision classify --help`)"
    ]
    assert elapsed < TIME_LIMIT


def test_unreachable_hub_is_detected_once_and_fast(tmp_path):
    """No network and no HF_HUB_OFFLINE: one connection attempt, one line naming the model and the fix."""
    with socket.socket() as sock:  # a port nothing listens on: connection refused at once
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]
    (tmp_path / "a.png").write_bytes(b"")
    env = {"HF_HUB_OFFLINE": "0", "HF_ENDPOINT": f"http://127.0.0.1:{closed}"}
    start = time.perf_counter()
    result = _python(["classify", "--input", str(tmp_path), "--output", str(tmp_path / "p.jsonl")], env=env)
    assert time.perf_counter() - start < TIME_LIMIT
    assert result.returncode == 1
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("hfvision classify: error: --model (default) rizvandwiki/gender-classification needs the")
    assert f"127.0.0.1:{closed} is unreachable" in line and "local folder" in line


def test_debug_raises_the_original_exception(corpus):
    from hfvision.cli._checks import CLIError

    argv = [
        "classify",
        "--model",
        str(corpus["root"] / "vit_no_weights"),
        "--input",
        str(corpus["root"] / "good.png"),
        "--output",
        "x.jsonl",
        "--debug",
    ]
    with pytest.raises(CLIError, match="no weights"):
        main(argv)


@pytest.mark.slow  # a fresh interpreter importing torch and transformers: ~7 s idle, 20 s on a busy machine
def test_console_run_is_quiet_off_a_terminal(corpus, tmp_path):
    """A real run with stderr piped: no loading bars, LOAD REPORT, INFO lines or ANSI codes; the one skipped image
    is the only line on stderr."""
    out = tmp_path / "preds.jsonl"
    result = _python(
        ["classify", "--model", str(corpus["vit"]), "--input", str(corpus["root"] / "photos"), "--output", str(out)]
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines() == [
        f"skipping {corpus['root'] / 'photos' / 'b.png'}: not an image: unknown format"
    ]
    assert result.stdout.splitlines() == [f"classified 1 image(s), 1 unreadable (skipped, see the warnings) -> {out}"]
