import pytest

from hfvision.data import read_caption
from hfvision.data.captions import filename_to_caption, resolve_caption


@pytest.mark.parametrize(
    "name, caption",
    [
        ("sks dog (3).jpg", "sks dog"),
        ("sks_dog-12.PNG", "sks dog"),
        ("IMG_0042.jpeg", "IMG"),
        ("0001.jpg", ""),
        ("zwx  woman (beach) 2021.webp", "zwx woman beach"),
        ("ohwx man.final.jpg", "ohwx man.final"),
    ],
)
def test_filename_to_caption_strips_digits_brackets_underscores_dashes(name, caption):
    assert filename_to_caption(name) == caption


def test_caption_priority_sidecar_then_filename_then_instance_prompt(tmp_path):
    image = tmp_path / "sks dog (3).jpg"  # the image itself need not exist: only the sidecar is read
    prompt = "a photo of sks dog"
    assert read_caption(image, prompt) == prompt
    assert read_caption(image, prompt, caption_from_filename=True) == "sks dog"
    (tmp_path / "sks dog (3).txt").write_text("\ufeffsks dog  on a\n beach\n", encoding="utf-8")  # BOM, newlines
    assert read_caption(image, prompt) == "sks dog on a beach"
    assert read_caption(image, prompt, caption_from_filename=True) == "sks dog on a beach"
    (tmp_path / "sks dog (3).txt").write_text("  \n")  # a blank sidecar does not count
    assert resolve_caption(image, prompt, True) == ("sks dog", "filename")
    assert resolve_caption(tmp_path / "0001.jpg", prompt, True) == (prompt, "instance prompt")
    assert resolve_caption(tmp_path / "0001.jpg", None) == (None, "none")
    with pytest.raises(ValueError, match="0001.jpg: no caption"):
        read_caption(tmp_path / "0001.jpg", None)


def test_unreadable_sidecars_are_clear_errors(tmp_path):
    (tmp_path / "a.txt").write_bytes(b"caf\xe9")
    with pytest.raises(ValueError, match=r"a\.txt: caption file is not UTF-8"):
        read_caption(tmp_path / "a.jpg", "p")
    (tmp_path / "b.txt").write_bytes(b"x" * 70_000)
    with pytest.raises(ValueError, match=r"b\.txt: caption file is 70000 bytes"):
        read_caption(tmp_path / "b.jpg", "p")
