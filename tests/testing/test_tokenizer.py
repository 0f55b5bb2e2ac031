import json

from hfvision.testing import clip_tokenizer, clip_tokenizer_dir


def test_clip_tokenizer_ids_match_openai_clip():
    tok = clip_tokenizer()
    assert tok("a photo of").input_ids == [49406, 320, 1125, 539, 49407]
    assert len(tok) == 49408
    assert tok.model_max_length == 77
    assert tok.pad_token_id == 49407


def test_clip_tokenizer_vocab_layout_and_cache():
    d = clip_tokenizer_dir()
    vocab = json.loads((d / "vocab.json").read_text())
    assert len(vocab) == 49408
    assert vocab["!"] == 0 and vocab["!</w>"] == 256
    assert vocab["<|startoftext|>"] == 49406 and vocab["<|endoftext|>"] == 49407
    merges = (d / "merges.txt").read_text().splitlines()
    assert merges[0].startswith("#version") and len(merges) == 1 + 48894
    mtime = (d / "vocab.json").stat().st_mtime_ns
    assert clip_tokenizer_dir() == d and (d / "vocab.json").stat().st_mtime_ns == mtime


def test_clip_tokenizer_round_trips_text_and_truncates():
    tok = clip_tokenizer()
    text = "a photo of sks dog on the moon"
    ids = tok(text).input_ids
    assert tok.decode(ids, skip_special_tokens=True) == text
    long = tok(" ".join(["dog"] * 200), truncation=True, max_length=tok.model_max_length).input_ids
    assert len(long) == 77 and long[-1] == 49407
