"""A small T5 (SentencePiece-Unigram) tokenizer built offline, for tiny Flux / SD3 test pipelines.

The real T5 vocabulary (32,100 pieces) cannot be downloaded here, so a deterministic stand-in is built in-process:
T5's special layout (``<pad>`` = 0, ``</s>`` = 1, ``<unk>`` = 2), then ``▁`` and the printable ASCII characters
(so every ASCII text tokenizes without ``<unk>``), then English words and sub-words taken in frequency order from
CLIP's BPE merges (word-final CLIP tokens become word-initial ``▁word`` pieces, the others continuation pieces),
scored by rank. The pieces go into transformers' `T5Tokenizer` (a `tokenizers` Unigram model with T5's
Metaspace pre-tokenizer and ``</s>`` post-processor), so it saves as ``tokenizer.json`` and loads back with the
stock ``T5Tokenizer.from_pretrained`` / ``AutoTokenizer.from_pretrained``.

>>> from hfvision.utils.t5_vocab import t5_tokenizer
>>> tok = t5_tokenizer()
>>> tok.convert_ids_to_tokens(tok("a photo of a dog").input_ids)
['▁a', '▁photo', '▁of', '▁a', '▁dog', '</s>']
"""

from __future__ import annotations

import math
import string
from functools import cache

SPECIAL_TOKENS = ("<pad>", "</s>", "<unk>")
DEFAULT_VOCAB_SIZE = 2000
_CHARACTERS = tuple(c for c in string.printable if not c.isspace())
_LETTER_WORDS = tuple("▁" + c for c in string.ascii_lowercase)  # "▁a", "▁i", ...: one-letter words


@cache
def t5_vocab(vocab_size: int = DEFAULT_VOCAB_SIZE) -> tuple[tuple[str, float], ...]:
    """``(piece, log-probability)`` pairs of the offline T5 vocabulary, ``vocab_size`` long (deterministic).

    Args:
        vocab_size (`int`, *optional*, defaults to 2000): number of pieces including the three special tokens;
            at least 124 (specials, ``▁``, the printable ASCII characters and the one-letter words).
    """
    from .clip_vocab import clip_tokenizer_dir

    base = [*SPECIAL_TOKENS, "▁", *_CHARACTERS, *_LETTER_WORDS]
    if vocab_size < len(base):
        raise ValueError(f"vocab_size={vocab_size} is too small; the T5 stand-in needs at least {len(base)} pieces")
    pieces, seen = [], set(base)
    with open(clip_tokenizer_dir() / "merges.txt", encoding="utf-8") as merges:
        next(merges)  # "#version" header
        for line in merges:
            token = "".join(line.split())
            word = token.removesuffix("</w>")
            if not (word.isascii() and word.isalpha()):
                continue
            piece = "▁" + word if token.endswith("</w>") else word
            if piece not in seen:
                seen.add(piece)
                pieces.append(piece)
            if len(base) + len(pieces) == vocab_size:
                break
    # Special tokens score 0 (never produced by the Unigram search); single characters are the costly fallback,
    # frequent (early) merges are cheap, so whole words win over their characters.
    scored = [(t, 0.0) for t in SPECIAL_TOKENS] + [(c, -20.0) for c in base[len(SPECIAL_TOKENS) : -26]]
    scored += [(w, -10.0) for w in _LETTER_WORDS]
    scored += [(p, -math.log(rank + 2.0)) for rank, p in enumerate(pieces)]
    return tuple(scored)


def t5_tokenizer(vocab_size: int = DEFAULT_VOCAB_SIZE, model_max_length: int = 512):
    """A transformers `T5Tokenizer` over `t5_vocab` (no download; the CLIP merges are built from open_clip's file).

    Args:
        vocab_size (`int`, *optional*, defaults to 2000): pieces in the vocabulary (no ``<extra_id_*>`` sentinels:
            the text encoders of Flux and SD3 never use them).
        model_max_length (`int`, *optional*, defaults to 512): T5's limit in Flux.1-dev / SD3.

    >>> t5_tokenizer().pad_token_id, t5_tokenizer().eos_token_id
    (0, 1)
    """
    from transformers import T5Tokenizer

    return T5Tokenizer(vocab=list(t5_vocab(vocab_size)), extra_ids=0, model_max_length=model_max_length)
