"""Per-image captions for DreamBooth: sidecar file > file name > instance prompt.

For an image ``photos/sks dog (3).jpg`` the caption is, in priority order:

1. the sidecar ``photos/sks dog (3).txt`` (UTF-8, whitespace collapsed to single spaces), when it exists and is not
   empty;
2. the file name turned into a caption, when ``caption_from_filename=True``: extension, digits and the characters
   ``_ ( ) -`` are removed and spaces collapsed, so ``sks dog (3).jpg`` -> ``sks dog`` (fast-stable-diffusion's
   convention). A name with nothing left (``0001.jpg``) falls through;
3. the instance prompt.

:func:`~hfvision.data.prepare_instance_images` writes the sidecar/file-name caption of every prepared image as
``<output stem>.txt`` next to it, so the trainer calls ``read_caption(prepared_png, instance_prompt)`` with
``caption_from_filename=False`` (prepared file names carry a content hash, not a caption). Images captioned by the
instance prompt get no ``.txt``, so changing the prompt later takes effect.

>>> read_caption("photos/sks dog (3).jpg", "a photo of sks dog", caption_from_filename=True)
'sks dog'
"""

from __future__ import annotations

import os
import re
from pathlib import Path

CAPTION_SUFFIX = ".txt"
#: Largest sidecar read; captions are short, anything bigger is a mistake (a log file named like an image).
MAX_CAPTION_BYTES = 64 * 1024

_FILENAME_JUNK = re.compile(r"[\d_()\-]+")
_SPACES = re.compile(r"\s+")


def filename_to_caption(path: str | os.PathLike) -> str:
    """``"sks dog (3).jpg"`` -> ``"sks dog"``: drop the extension, digits and ``_()-``, collapse spaces.

    Returns an empty string when nothing is left.
    """
    stem = Path(path).stem
    return _SPACES.sub(" ", _FILENAME_JUNK.sub(" ", stem)).strip()


def sidecar_path(image_path: str | os.PathLike) -> Path:
    """``dir/name.jpg`` -> ``dir/name.txt``."""
    return Path(image_path).with_suffix(CAPTION_SUFFIX)


def read_sidecar(image_path: str | os.PathLike) -> str | None:
    """The cleaned caption in the image's ``.txt`` sidecar, or ``None`` if there is none (or it is blank).

    Raises:
        `ValueError`: the sidecar is not UTF-8 text or is larger than 64 KiB (names the file).
    """
    path = sidecar_path(image_path)
    if not path.is_file():
        return None
    data = path.read_bytes()
    if len(data) > MAX_CAPTION_BYTES:
        raise ValueError(f"{path}: caption file is {len(data)} bytes (max {MAX_CAPTION_BYTES}); is it a caption?")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise ValueError(f"{path}: caption file is not UTF-8 text ({err.reason}); re-save it as UTF-8") from err
    text = _SPACES.sub(" ", text).strip()
    return text or None


def resolve_caption(
    image_path: str | os.PathLike, instance_prompt: str | None, caption_from_filename: bool = False
) -> tuple[str | None, str]:
    """Like [`read_caption`] but also says where the caption came from: ``"sidecar"``, ``"filename"``,
    ``"instance prompt"`` or ``"none"`` (no caption and no instance prompt: ``(None, "none")``)."""
    text = read_sidecar(image_path)
    if text:
        return text, "sidecar"
    if caption_from_filename:
        text = filename_to_caption(image_path)
        if text:
            return text, "filename"
    if instance_prompt:
        return instance_prompt, "instance prompt"
    return None, "none"


def read_caption(
    image_path: str | os.PathLike, instance_prompt: str | None, caption_from_filename: bool = False
) -> str:
    """The caption of one image: sidecar ``.txt`` > file name (if ``caption_from_filename``) > ``instance_prompt``.

    Args:
        image_path (`str` or `os.PathLike`): the image (it does not need to exist; only its sidecar is read).
        instance_prompt (`str`, *optional*): fallback caption, e.g. ``"a photo of sks dog"``.
        caption_from_filename (`bool`, *optional*, defaults to `False`): use the cleaned file name as second choice.

    Raises:
        `ValueError`: no caption can be found and ``instance_prompt`` is empty, or the sidecar is unreadable.

    >>> read_caption("instance_images/dog-3f2a.png", "a photo of sks dog")
    'a photo of sks dog'
    """
    text, _ = resolve_caption(image_path, instance_prompt, caption_from_filename)
    if text is None:
        raise ValueError(f"{image_path}: no caption (no {sidecar_path(image_path).name}); pass an instance prompt")
    return text
