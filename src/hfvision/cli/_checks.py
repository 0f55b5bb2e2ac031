"""The command line's contract, shared by every subcommand: cheap checks that run before any model or dataset loads,
and the translation of failures into one line in CLI words.

Exit codes: 2 for a usage error (a flag's value is wrong whatever the files say), 1 for every other failure (a missing
or broken file, an output that exists, no GPU, the Hub unreachable, an error while running).

Nothing here imports torch, transformers or diffusers at module level: ``hfvision --help`` stays fast.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import struct
from pathlib import Path

USAGE, FAILURE = 2, 1
#: weights files a model folder may hold; pickles are loaded only with --allow-pickle
SAFE_WEIGHTS = ("model.safetensors", "model.safetensors.index.json", "adapter_model.safetensors", "model.onnx")
#: tasks ``classify`` and ``serve`` accept (hfvision's vision tasks, not transformers' ~30 text/audio ones)
CLASSIFY_TASKS = ("gender-classification", "image-classification")


class CLIError(Exception):
    """A failure the command line reports as one line (``hfvision CMD: error: MESSAGE``) with exit ``code``."""

    def __init__(self, message: str, code: int = FAILURE):
        super().__init__(message)
        self.code = code


class HelpFormatter(argparse.HelpFormatter):
    """Shows an option's default once: appended unless the help already mentions it, or it is None/False."""

    def _get_help_string(self, action):
        text = action.help or ""
        default = action.default
        if "default" in text or default in (None, False, argparse.SUPPRESS) or not action.option_strings:
            return text
        if isinstance(default, (list, tuple)) and not default:
            return text
        return f"{text} (default: %(default)s)"


# --- argparse value types (a bad value is a usage error: one line, exit 2) --------------------------------------------


def _number(kind, minimum=None, strict=False, multiple=None):
    name = "an integer" if kind is int else "a number"
    bound = "" if minimum is None else (f" > {minimum}" if strict else f" >= {minimum}")

    def convert(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {name}; use {name}{bound}") from None
        if minimum is not None and (value <= minimum if strict else value < minimum):
            raise argparse.ArgumentTypeError(f"{text!r} must be {name}{bound}")
        if multiple and value % multiple:
            low = value // multiple * multiple
            hint = f"{low} or {low + multiple}" if low else f"{multiple}"
            raise argparse.ArgumentTypeError(f"{text!r} must be a multiple of {multiple}; try {hint}")
        return value

    convert.__name__ = kind.__name__  # argparse names the type in "invalid int value" messages
    return convert


positive_int = _number(int, 0, strict=True)
non_negative_int = _number(int, 0)
non_negative_float = _number(float, 0)
pixel_size = _number(int, 0, strict=True, multiple=8)


# --- paths -------------------------------------------------------------------------------------------------------------


def looks_like_path(value: str) -> bool:
    """True for values only a path can be (``./x``, ``/x``, ``~/x``, ``x/y/z``, ``name.ext``)."""
    text = str(value)
    return text.startswith((".", "/", "~")) or text.count("/") > 1 or os.sep != "/" and os.sep in text


def existing(value: str, flag: str, kind: str = "any") -> Path:
    """``value`` as a path that exists (``kind``: ``"file"``, ``"folder"`` or ``"any"``), else a one-line error."""
    path = Path(value).expanduser()
    if not path.exists():
        raise CLIError(f"{flag} {value}: no such {'file or folder' if kind == 'any' else kind}")
    if kind == "file" and path.is_dir():
        raise CLIError(f"{flag} {value} is a folder; give a file")
    if kind == "folder" and not path.is_dir():
        raise CLIError(f"{flag} {value} is a file; give a folder")
    if kind == "file" and path.stat().st_size == 0:
        raise CLIError(f"{flag} {value} is empty (0 bytes)")
    return path


def output_file(value: str, flag: str, overwrite: bool) -> Path:
    """Check an output file before any work: not a folder, not existing unless ``--overwrite``."""
    path = Path(value).expanduser()
    if path.is_dir():
        raise CLIError(
            f"{flag} {value} is a folder; give a file name, e.g. {os.path.join(value, 'out' + path.suffix)}"
        )
    if path.exists() and not overwrite:
        raise CLIError(f"{flag} {value} already exists; choose another name or add --overwrite to replace it")
    parent = path.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK):
        raise CLIError(f"{flag} {value}: cannot create files in {parent}")
    return path


def output_folder(value: str, flag: str, overwrite: bool) -> Path:
    """Check an output folder before any work: not a file, empty (or absent) unless ``--overwrite``."""
    path = Path(value).expanduser()
    if path.exists() and not path.is_dir():
        raise CLIError(f"{flag} {value} is a file; give a folder")
    if path.is_dir() and any(path.iterdir()) and not overwrite:
        raise CLIError(f"{flag} {value} exists and is not empty; choose another folder or add --overwrite")
    return path


# --- weights and model folders -----------------------------------------------------------------------------------------


def check_safetensors(path: Path, flag: str) -> None:
    """Read only the header of a ``.safetensors`` file and refuse a corrupt or truncated one."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        problem = None
        if len(head) < 8:
            problem = f"{size} bytes, too short for a header"
        else:
            (length,) = struct.unpack("<Q", head)
            if length > size - 8 or length > 100_000_000:
                problem = "invalid header length"
            else:
                try:
                    header = json.loads(f.read(length))
                    end = max((t["data_offsets"][1] for k, t in header.items() if k != "__metadata__"), default=0)
                    if 8 + length + end != size:
                        problem = (
                            f"truncated or padded: the header describes {8 + length + end} bytes, the file has {size}"
                        )
                except (ValueError, KeyError, TypeError, IndexError):
                    problem = "its header is not valid safetensors JSON"
    if problem:
        raise CLIError(
            f"{flag}: {path} is not a valid safetensors file (truncated or corrupt: {problem}); download or save it again"
        )


def _weights_in(folder: Path, allow_pickle: bool, flag: str, pickle_flag: bool = True) -> None:
    names = {p.name for p in folder.iterdir()}
    safe = [
        n for n in names if n.endswith(".safetensors") or n == "model.onnx" or n.endswith(".safetensors.index.json")
    ]
    pickles = [n for n in names if n.endswith((".bin", ".pt", ".pth", ".ckpt")) or n.endswith(".bin.index.json")]
    if not safe and not pickles:
        raise CLIError(
            f"{flag} {folder}: no weights in the folder (no model.safetensors); save the model there with "
            "save_pretrained, or point the flag at the complete model folder"
        )
    if not safe and not allow_pickle:
        raise CLIError(
            f"{flag} {folder} holds only pickle weights ({', '.join(sorted(pickles))}); convert them to safetensors"
            + (", or add --allow-pickle if you trust their source" if pickle_flag else "")
        )
    for name in safe:
        if name.endswith(".safetensors"):
            check_safetensors(folder / name, flag)


def check_classifier_folder(folder: Path, flag: str, allow_pickle: bool = False) -> None:
    """A transformers/timm image-classifier folder: config, weights (valid safetensors) and preprocessing."""
    if (folder / "adapter_config.json").is_file() and not (folder / "config.json").is_file():
        _weights_in(folder, allow_pickle, flag)  # a PEFT adapter repo: its base model is named in the adapter config
        return
    if not (folder / "config.json").is_file():
        raise CLIError(f"{flag} {folder} is not a model folder (no config.json); point it at a saved model folder")
    _weights_in(folder, allow_pickle, flag)
    if not (folder / "preprocessor_config.json").is_file():
        try:
            config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        except ValueError:
            raise CLIError(f"{flag} {folder}: config.json is not valid JSON; save the model again") from None
        if "pretrained_cfg" not in config:  # timm's layout keeps preprocessing in config.json
            raise CLIError(
                f"{flag} {folder} has no preprocessor_config.json; copy it from the base model "
                "(AutoImageProcessor.from_pretrained(base).save_pretrained(folder))"
            )


def check_diffusers_folder(folder: Path, flag: str) -> None:
    """A diffusers pipeline folder: model_index.json and, for every component it names, a complete subfolder."""
    index_file = folder / "model_index.json"
    if not index_file.is_file():
        raise CLIError(
            f"{flag} {folder} is not a diffusers pipeline folder (no model_index.json); point it at the pipeline's "
            "folder or a single .safetensors file"
        )
    try:
        index = json.loads(index_file.read_text(encoding="utf-8"))
    except ValueError:
        raise CLIError(f"{flag} {folder}: model_index.json is not valid JSON; save the pipeline again") from None
    for name, spec in index.items():
        if name.startswith("_") or not isinstance(spec, list) or len(spec) != 2 or spec[0] is None:
            continue
        sub = folder / name
        if not sub.is_dir():
            raise CLIError(
                f"{flag} {folder} is incomplete: model_index.json names a {name} but there is no {name}/ folder; "
                "copy the whole pipeline folder"
            )
        if spec[0] in ("diffusers", "transformers") and (sub / "config.json").is_file():
            _weights_in(sub, False, f"{flag} ({name}/)", pickle_flag=False)


def check_single_file(path: Path, flag: str) -> None:
    """A single-file checkpoint: not empty, and a valid safetensors header when it claims to be one."""
    if path.stat().st_size == 0:
        raise CLIError(f"{flag} {path} is empty (0 bytes)")
    if path.suffix.lower() == ".safetensors":
        check_safetensors(path, flag)


# --- devices and the Hub -----------------------------------------------------------------------------------------------


def check_device(device: str | None, flag: str = "--device") -> None:
    """Refuse a device this machine does not have (imports torch: call after the cheaper checks)."""
    if not device or device == "cpu":
        return
    if not re.fullmatch(r"(cpu|cuda|mps|xpu|npu)(:\d+)?", device):
        raise CLIError(f"{flag} {device!r} is not a device; use cpu, cuda, cuda:1, mps ...", USAGE)
    import torch

    kind, _, number = device.partition(":")
    if kind == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise CLIError(f"{flag} {device}: no CUDA GPU is available on this machine; use {flag} cpu")
        if number and int(number) >= count:
            raise CLIError(f"{flag} {device}: this machine has {count} CUDA GPU(s) (cuda:0..cuda:{count - 1})")
    elif kind == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise CLIError(f"{flag} {device}: Apple MPS is not available here; use {flag} cpu")
    elif kind in ("xpu", "npu") and not (hasattr(torch, kind) and getattr(torch, kind).is_available()):
        raise CLIError(f"{flag} {device}: no {kind.upper()} device is available here; use {flag} cpu")


_HUB_REACHABLE: dict[str, str | None] = {}


def _hub_problem(timeout: float = 3.0) -> str | None:
    """Why the Hub cannot be reached (``None`` if it can): one TCP connection, asked once per process."""
    import socket
    from urllib.parse import urlsplit

    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return "HF_HUB_OFFLINE is set"
    endpoint = constants.ENDPOINT
    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY")):
        return None  # behind a proxy a direct connection says nothing: let huggingface_hub try
    if endpoint not in _HUB_REACHABLE:
        parts = urlsplit(endpoint)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        try:
            socket.create_connection((parts.hostname, port), timeout=timeout).close()
            _HUB_REACHABLE[endpoint] = None
        except OSError as err:
            _HUB_REACHABLE[endpoint] = f"{parts.hostname}:{port} is unreachable ({err.strerror or err})"
    return _HUB_REACHABLE[endpoint]


def check_hub_model(
    repo_id: str, flag: str, filename: str = "", revision: str | None = None, shown: str = "", repo_type: str = "model"
) -> None:
    """A Hub repo is usable: the Hub answers, or the repo is in the local cache (then loading stays offline)."""
    problem = _hub_problem()
    if problem is None:
        return
    from huggingface_hub import constants, try_to_load_from_cache

    if filename:
        cached = isinstance(try_to_load_from_cache(repo_id, filename, revision=revision, repo_type=repo_type), str)
    else:
        cached = (Path(constants.HF_HUB_CACHE) / f"{repo_type}s--{repo_id.replace('/', '--')}").is_dir()
    if cached:
        if not constants.HF_HUB_OFFLINE:  # use the cache without the retries of an unreachable Hub
            constants.HF_HUB_OFFLINE = True
            os.environ["HF_HUB_OFFLINE"] = "1"
        return
    what = "folder holding the model" if repo_type == "model" else f"{repo_type} folder"
    raise CLIError(
        f"{flag} {shown or repo_id} needs the Hugging Face Hub, and {problem}; it is not in the local cache either. "
        f"Point {flag} at a local {what}, or run once with network access to cache it"
    )


def model_source(value: str, flag: str, kind: str, allow_pickle: bool = False, revision: str | None = None) -> str:
    """Check a ``--model`` value before loading: ``kind`` is ``"classifier"`` or ``"diffusers"``.

    Returns ``"folder"``, ``"file"``, ``"hub"``, ``"registry"`` or ``"url"``.
    """
    path = Path(value).expanduser()
    if path.is_dir():
        (check_classifier_folder if kind == "classifier" else check_diffusers_folder)(
            path, flag, *((allow_pickle,) if kind == "classifier" else ())
        )
        return "folder"
    if path.is_file():
        if kind == "classifier":
            raise CLIError(f"{flag} {value} is a file; give the model's folder (with config.json) or a Hub id")
        check_single_file(path, flag)
        return "file"
    if kind == "diffusers":
        from ..models.loading import classify_source

        try:
            source = classify_source(value)
        except FileNotFoundError:
            raise CLIError(f"{flag} {value}: no such file or folder") from None
        except ValueError as err:
            raise CLIError(f"{flag}: {err}") from None
        if source == "url":
            return source
        if source == "registry":
            from ..models.registry import get_base_model

            entry = get_base_model(value)
            check_hub_model(
                entry.repo_id, flag, "model_index.json", revision or entry.revision, shown=f"{value} ({entry.repo_id})"
            )
            return source
        check_hub_model(value, flag, "model_index.json", revision)
        return "hub"
    if looks_like_path(value) or not re.fullmatch(r"[A-Za-z0-9][\w.-]*(/[\w.-]+)?", value):
        raise CLIError(f"{flag} {value}: no such folder (a Hub id looks like 'owner/name')")
    check_hub_model(value, flag, "config.json", revision)
    return "hub"


# --- errors in CLI words -----------------------------------------------------------------------------------------------

_PYTHON_WORDS = [
    (re.compile(r"pass model=<([^>]*)>"), r"pass --model <\1>"),
    (
        re.compile(r"\b(?:pass )?(overwrite|allow_pickle|trust_remote_code|verify)=True\b( \(--[\w-]+\))?"),
        lambda m: f"add --{_flag(m[1])}",
    ),
    (re.compile(r"pass config=<([^>]*)>"), r"pass --config <\1>"),
    (re.compile(r"\b\w+=(?:True|'[^']*'|\S+?) \((--[^)]+)\)"), r"\1"),  # "x=True (--x)" -> "--x"
]
_FLAG_NAMES = {"instance_token": "token", "class_noun": "class-noun"}


def _flag(name: str) -> str:
    return _FLAG_NAMES.get(name, name.replace("_", "-"))


def in_cli_words(message: str) -> str:
    """Rewrite the Python-API advice in a library error (``pass overwrite=True``) as flags (``add --overwrite``)."""
    for pattern, replacement in _PYTHON_WORDS:
        message = pattern.sub(replacement, message)
    return message


def one_line(err: BaseException) -> str:
    """The one line the command line prints for ``err``."""
    if isinstance(err, CLIError):
        return str(err)
    name = type(err).__name__
    text = str(err).strip()
    if isinstance(err, KeyError):
        text = str(err.args[0]) if err.args else ""
    if name == "SafetensorError":
        text = f"a .safetensors file is corrupt ({text}); download or save it again"
    elif name in ("OutOfMemoryError",) or "out of memory" in text.lower():
        text = f"out of memory ({text.splitlines()[0] if text else name}); try a smaller --batch-size or --device cpu"
    elif isinstance(err, (OSError, ValueError, ImportError, RuntimeError, NotImplementedError)) or name.endswith(
        "Error"
    ):
        text = text or name
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if len(lines) > 12:  # a multi-line report (e.g. per-case validation results): the first ones, on one line
        lines = [*lines[:12], f"... ({len(lines) - 12} more; add --debug for everything)"]
    text = "; ".join(line.rstrip(":;") for line in lines) if len(lines) > 1 else (lines[0] if lines else "")
    if not isinstance(err, (OSError, ValueError, ImportError)) or not text:
        text = f"{name}: {text}" if text else name
    return in_cli_words(text)
