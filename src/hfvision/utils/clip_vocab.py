"""A real CLIP BPE tokenizer rebuilt offline from the merges file that open_clip_torch ships.

CLIP's vocabulary is: the 256 byte-to-unicode symbols, the same symbols with ``</w>``, one token
per merge (the first 48,894 merge lines after the header), then ``<|startoftext|>`` and
``<|endoftext|>`` — 49,408 entries. ``merges.txt`` holds those merge lines.
"""

from __future__ import annotations

import gzip
import json
import os
from functools import cache
from pathlib import Path

from .import_utils import require
from .io import atomic_dir

VOCAB_SIZE = 49408
_NUM_MERGES = VOCAB_SIZE - 256 * 2 - 2  # 48,894


def _bytes_to_unicode() -> list[str]:
    """CLIP/GPT-2's reversible byte -> printable-unicode table, in vocabulary order."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    printable += list(range(ord("®"), ord("ÿ") + 1))
    codes, extra = list(printable), 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            codes.append(256 + extra)
            extra += 1
    return [chr(c) for c in codes]


def default_cache_dir() -> Path:
    """``$HFVISION_CACHE`` or ``~/.cache/hfvision``."""
    return Path(os.environ.get("HFVISION_CACHE", Path.home() / ".cache" / "hfvision"))


def write_clip_tokenizer_files(out_dir: str | os.PathLike) -> Path:
    """Write ``vocab.json`` and ``merges.txt`` for CLIP's tokenizer into ``out_dir`` (atomically)."""
    require("open_clip", "the offline CLIP tokenizer")
    import open_clip

    bpe_path = Path(open_clip.__file__).parent / "bpe_simple_vocab_16e6.txt.gz"
    lines = gzip.open(bpe_path, "rt", encoding="utf-8").read().split("\n")
    merges = lines[1 : 1 + _NUM_MERGES]
    symbols = _bytes_to_unicode()
    vocab = symbols + [s + "</w>" for s in symbols] + ["".join(m.split()) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    if len(vocab) != VOCAB_SIZE:
        raise RuntimeError(f"{bpe_path} gave {len(vocab)} tokens, expected {VOCAB_SIZE}; unsupported open_clip file")
    out_dir = Path(out_dir)
    with atomic_dir(out_dir, overwrite=True) as tmp:
        (tmp / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(vocab)}, ensure_ascii=False))
        (tmp / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    return out_dir


@cache
def clip_tokenizer_dir(cache_dir: str | None = None) -> Path:
    """Directory with the CLIP ``vocab.json``/``merges.txt``, built once and cached on disk."""
    root = Path(cache_dir) if cache_dir else default_cache_dir()
    out = root / "clip-tokenizer-v1"
    if not ((out / "vocab.json").is_file() and (out / "merges.txt").is_file()):
        write_clip_tokenizer_files(out)
    return out


def clip_tokenizer(model_max_length: int = 77, cache_dir: str | None = None):
    """Return a ``transformers.CLIPTokenizer`` equal to openai/clip-vit-large-patch14's, with no download.

    >>> tok = clip_tokenizer()
    >>> tok("a photo of").input_ids
    [49406, 320, 1125, 539, 49407]
    """
    from transformers import CLIPTokenizer

    d = clip_tokenizer_dir(cache_dir)
    return CLIPTokenizer(
        str(d / "vocab.json"), str(d / "merges.txt"), model_max_length=model_max_length, pad_token="<|endoftext|>"
    )
