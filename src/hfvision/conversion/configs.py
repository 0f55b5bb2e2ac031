"""Diffusers-format config directories for loading single files offline.

diffusers' ``from_single_file`` needs a diffusers-format config directory (``model_index.json``,
component ``config.json``s, scheduler and tokenizer files); without one it fetches the original
model's configs from the Hub. hfvision provides two offline sources, both turned into such a
directory by :func:`write_config_dir`:

- the component configs that :func:`~hfvision.conversion.to_single_file` stores in the file header
  (exact round trips, any model shape), and
- configs bundled in ``hfvision/conversion/configs/<base>/`` for the public base models (SD 1.5,
  SD 2.1 768-v / 512-base, SDXL base 1.0), written from their published diffusers configs.

Tokenizer vocabularies are not stored anywhere: CLIP's ``vocab.json``/``merges.txt`` are rebuilt by
:func:`hfvision.testing.clip_tokenizer_dir` from the BPE file that ``open_clip_torch`` ships (so this
path needs ``pip install 'hfvision[testing]'``), and checked against the stored fingerprint.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from ..utils.logging import get_logger

logger = get_logger(__name__)

CONFIG_ROOT = Path(__file__).parent / "configs"
MODEL_COMPONENTS = ("unet", "vae", "text_encoder", "text_encoder_2")
TOKENIZERS = ("tokenizer", "tokenizer_2")
PIPELINE_CLASSES = {
    "sd1": "StableDiffusionPipeline",
    "sd2": "StableDiffusionPipeline",
    "sdxl": "StableDiffusionXLPipeline",
}


@dataclass(frozen=True)
class BaseConfig:
    """A bundled config set: folder under ``configs/``, family, and overrides applied on top."""

    folder: str
    family: str
    description: str
    overrides: dict = field(default_factory=dict)


BASES: dict[str, BaseConfig] = {
    "sd15": BaseConfig("sd15", "sd1", "Stable Diffusion 1.5 (512, epsilon)"),
    "sd21": BaseConfig("sd21", "sd2", "Stable Diffusion 2.1 (768, v-prediction)"),
    "sd21-base": BaseConfig(
        "sd21",
        "sd2",
        "Stable Diffusion 2.1 base (512, epsilon)",
        {
            "unet": {"sample_size": 64, "upcast_attention": False},
            "vae": {"sample_size": 512},
            "scheduler": {"prediction_type": "epsilon"},
        },
    ),
    "sdxl": BaseConfig("sdxl", "sdxl", "Stable Diffusion XL base 1.0 (1024, epsilon)"),
}
DEFAULT_BASE = {"sd1": "sd15", "sd2": "sd21", "sdxl": "sdxl"}
PREDICTION_TYPES = ("epsilon", "v_prediction", "sample")


def normalize_prediction_type(value: str) -> str:
    """Accept diffusers names and the ModelSpec spelling (``"v"``) and return the diffusers name."""
    value = {"v": "v_prediction", "eps": "epsilon"}.get(value, value)
    if value not in PREDICTION_TYPES:
        raise ValueError(f"prediction_type={value!r} is not one of {PREDICTION_TYPES} (or 'v')")
    return value


def bundled_configs(base: str) -> dict:
    """The config set of a public base model (``"sd15"``, ``"sd21"``, ``"sd21-base"``, ``"sdxl"``).

    >>> bundled_configs("sd21-base")["scheduler"]["prediction_type"]
    'epsilon'
    """
    if base not in BASES:
        raise ValueError(f"base={base!r} has no bundled configs; choose one of {sorted(BASES)}")
    spec = BASES[base]
    root = CONFIG_ROOT / spec.folder
    configs = {"model_index": json.loads((root / "model_index.json").read_text())}
    for name in MODEL_COMPONENTS:
        if (root / name / "config.json").is_file():
            configs[name] = json.loads((root / name / "config.json").read_text())
    configs["scheduler"] = json.loads((root / "scheduler" / "scheduler_config.json").read_text())
    for name in TOKENIZERS:
        if (root / name / "tokenizer_config.json").is_file():
            configs[name] = {"tokenizer_config": json.loads((root / name / "tokenizer_config.json").read_text())}
    for name, values in spec.overrides.items():
        configs[name] = {**configs[name], **values}
    return configs


def vocab_fingerprint(vocab: dict[str, int]) -> str:
    """sha256 of a tokenizer vocabulary (token -> id, added tokens included), e.g. ``tokenizer.get_vocab()``."""
    lines = "\n".join(f"{i}\t{token}" for token, i in sorted(vocab.items(), key=lambda item: (item[1], item[0])))
    return hashlib.sha256(lines.encode("utf-8")).hexdigest()


@functools.cache
def _clip_vocab_fingerprint(vocab_file: str) -> str:
    return vocab_fingerprint(json.loads(Path(vocab_file).read_text(encoding="utf-8")))


def _saved_vocab(tokenizer_dir: Path) -> dict[str, int] | None:
    """token -> id read straight from a saved BPE tokenizer's files (``vocab.json`` or ``tokenizer.json``)."""
    if (tokenizer_dir / "tokenizer.json").is_file():
        data = json.loads((tokenizer_dir / "tokenizer.json").read_text(encoding="utf-8"))
        if data.get("model", {}).get("type") != "BPE":
            return None
        vocab = dict(data["model"]["vocab"])
        vocab.update({t["content"]: t["id"] for t in data.get("added_tokens", [])})
        return vocab
    if (tokenizer_dir / "vocab.json").is_file() and not (tokenizer_dir / "added_tokens.json").is_file():
        return json.loads((tokenizer_dir / "vocab.json").read_text(encoding="utf-8"))
    return None


def tokenizer_entry(tokenizer_dir: str | os.PathLike) -> dict:
    """What the header records about a saved tokenizer: its ``tokenizer_config.json`` and vocab fingerprint."""
    tokenizer_dir = Path(tokenizer_dir)
    tok_config = json.loads((tokenizer_dir / "tokenizer_config.json").read_text())
    added = tok_config.pop("added_tokens_decoder", None) or {}
    vocab = _saved_vocab(tokenizer_dir)
    if vocab is None or any(int(i) not in vocab.values() for i in added):
        from transformers import AutoTokenizer

        vocab = AutoTokenizer.from_pretrained(tokenizer_dir).get_vocab()
    return {"tokenizer_config": tok_config, "vocab_sha256": vocab_fingerprint(vocab)}


def pipeline_model_index(family: str, configs: dict) -> dict:
    """A ``model_index.json`` for diffusers' own SD/SDXL pipeline class with the components in ``configs``."""
    index = {"_class_name": PIPELINE_CLASSES[family], "feature_extractor": [None, None], "image_encoder": [None, None]}
    stored = configs.get("model_index", {})
    index["unet"] = ["diffusers", "UNet2DConditionModel"]
    index["vae"] = ["diffusers", "AutoencoderKL"]
    index["scheduler"] = ["diffusers", configs["scheduler"]["_class_name"]]
    index["text_encoder"] = ["transformers", "CLIPTextModel"]
    index["tokenizer"] = ["transformers", "CLIPTokenizer"]
    if family == "sdxl":
        index["text_encoder_2"] = ["transformers", "CLIPTextModelWithProjection"]
        index["tokenizer_2"] = ["transformers", "CLIPTokenizer"]
        index["force_zeros_for_empty_prompt"] = bool(stored.get("force_zeros_for_empty_prompt", True))
    else:
        index["safety_checker"] = [None, None]
        index["requires_safety_checker"] = False
    return index


def write_config_dir(configs: dict, family: str, out_dir: str | os.PathLike) -> Path:
    """Write a diffusers-format config directory (no weights) from a config set.

    Args:
        configs (`dict`): ``unet``/``vae``/``text_encoder``[``_2``]/``scheduler`` config dicts and
            ``tokenizer``[``_2``] entries (``{"tokenizer_config": ..., "vocab_sha256": ...}``).
        family (`str`): ``"sd1"``, ``"sd2"`` or ``"sdxl"`` (selects diffusers' pipeline class).
        out_dir (`str` or `os.PathLike`): directory to create (a scratch directory; not atomic).
    """
    from ..utils.clip_vocab import clip_tokenizer_dir

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "model_index.json").write_text(json.dumps(pipeline_model_index(family, configs), indent=2))
    names = ["unet", "vae", "text_encoder"] + (["text_encoder_2"] if family == "sdxl" else [])
    for name in names:
        if name not in configs:
            raise ValueError(f"the {family} config set has no {name!r} config")
        (out / name).mkdir(exist_ok=True)
        (out / name / "config.json").write_text(json.dumps(configs[name], indent=2))
    (out / "scheduler").mkdir(exist_ok=True)
    (out / "scheduler" / "scheduler_config.json").write_text(json.dumps(configs["scheduler"], indent=2))
    vocab_dir = clip_tokenizer_dir()
    for name in ["tokenizer"] + (["tokenizer_2"] if family == "sdxl" else []):
        entry = configs.get(name) or configs.get("tokenizer")
        tok_dir = out / name
        tok_dir.mkdir(exist_ok=True)
        shutil.copy(vocab_dir / "vocab.json", tok_dir / "vocab.json")
        shutil.copy(vocab_dir / "merges.txt", tok_dir / "merges.txt")
        tok_config = {k: v for k, v in entry["tokenizer_config"].items() if k not in ("backend", "auto_map")}
        tok_config["tokenizer_class"] = "CLIPTokenizer"
        (tok_dir / "tokenizer_config.json").write_text(json.dumps(tok_config, indent=2))
        if entry.get("vocab_sha256"):
            _check_tokenizer(vocab_dir / "vocab.json", entry["vocab_sha256"], name)
    return out


def _check_tokenizer(vocab_file: Path, expected: str, name: str) -> None:
    # CLIP's special tokens are part of vocab.json, so the file alone fingerprints the rebuilt tokenizer.
    if _clip_vocab_fingerprint(str(vocab_file)) != expected:
        raise ValueError(
            f"the {name} of this checkpoint is not CLIP's standard vocabulary (added tokens?); pass "
            "config=<the original diffusers directory> so its tokenizer is used"
        )


def copy_config_dir(source: str | os.PathLike, family: str, out_dir: str | os.PathLike) -> Path:
    """Copy a diffusers directory's configs and tokenizer files (not its weights) into ``out_dir``, with a
    ``model_index.json`` for diffusers' own pipeline class (so e.g. a DreamBoothPipeline directory works)."""
    source = Path(source)
    if not (source / "model_index.json").is_file():
        raise FileNotFoundError(f"config={source} is not a diffusers pipeline directory (no model_index.json)")
    weights = ("*.safetensors", "*.bin", "*.ckpt", "*.pt", "*.pth", "*.onnx", "*.msgpack", "*.gguf", "*.py")
    shutil.copytree(source, out_dir, ignore=shutil.ignore_patterns(*weights), dirs_exist_ok=True)
    out = Path(out_dir)
    configs = {
        "model_index": json.loads((out / "model_index.json").read_text()),
        "scheduler": json.loads((out / "scheduler" / "scheduler_config.json").read_text()),
    }
    (out / "model_index.json").write_text(json.dumps(pipeline_model_index(family, configs), indent=2))
    return out


def set_prediction_type(config_dir: str | os.PathLike, prediction_type: str) -> None:
    """Rewrite the scheduler config of a (scratch) config directory with ``prediction_type``."""
    path = Path(config_dir) / "scheduler" / "scheduler_config.json"
    config = json.loads(path.read_text())
    config["prediction_type"] = normalize_prediction_type(prediction_type)
    path.write_text(json.dumps(config, indent=2))
