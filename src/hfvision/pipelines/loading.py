"""Safe model loading: safetensors only unless the user opts in, and sha256 verification against the Hub.

safetensors cannot execute code but carries no checksum, and huggingface_hub only checks sizes on download.
:func:`verified_snapshot` downloads a revision, then compares every downloaded file with the hashes the Hub
records (sha256 for LFS files, git blob ids otherwise) through ``HfApi.verify_repo_checksums``.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..export.runtime import ONNX_FILE, QUANTIZED_FILE
from ..utils.logging import get_logger

logger = get_logger(__name__)

#: weight files that are Python pickles (can run code when loaded)
PICKLE_PATTERNS = ("*.bin", "*.pt", "*.pth", "*.ckpt", "*.pkl", "*.pickle", "*.joblib")
#: weights of other frameworks/runtimes, never needed to build a torch pipeline
OTHER_FRAMEWORK_PATTERNS = ("*.h5", "*.msgpack", "*.ot", "*.tflite", "*.mlmodel", "*.onnx", "*.onnx_data")
_PICKLE_SUFFIXES = tuple(p[1:] for p in PICKLE_PATTERNS)
_WEIGHT_SUFFIXES = (".safetensors", *_PICKLE_SUFFIXES)


#: how each entry point spells the opt-in to pickle weights (named in the refusal)
HFVISION_OPT_IN = "allow_pickle=True (CLI --allow-pickle)"
TRANSFORMERS_OPT_IN = "model_kwargs={'allow_pickle': True} to transformers.pipeline"
#: ONNX files hfvision's runtime loads, in order of preference (fp32 export, then its int8 version)
ONNX_FILES = (ONNX_FILE, QUANTIZED_FILE)


class ChecksumMismatchError(ValueError):
    """Downloaded files whose hashes differ from the ones the Hub records."""


class PickleRefusedError(ValueError):
    """A checkpoint whose weights are pickle files only, loaded without the opt-in (``files``: those found)."""

    def __init__(self, message: str, files: list[str] | None = None):
        super().__init__(message)
        self.files = files


class LoadRefusedError(Exception):
    """hfvision's loader refused (or, for an ONNX export, failed to load) a model inside ``transformers.pipeline``.

    The reason is the exception's ``__cause__``.

    Deliberately not a ``ValueError``/``OSError``: ``transformers.pipeline`` catches those from one model class
    and retries with the classes named in the config's ``architectures``, which would load the refused files anyway.
    """


def pickle_refusal(source: str, files: list[str] | None = None, opt_in: str = HFVISION_OPT_IN) -> PickleRefusedError:
    """The error for a checkpoint without safetensors weights (``files``: the pickle files found, if known)."""
    if files:
        found = "weights are pickle files only (" + ", ".join(sorted(files)[:3]) + (" ...)" if len(files) > 3 else ")")
    else:
        found = "no safetensors weights found"
    return PickleRefusedError(
        f"{source}: {found}; pickle weights can run code when loaded, so hfvision loads safetensors only by "
        f"default. Use a safetensors checkpoint, or pass {opt_in} if you trust the source",
        files,
    )


def check_local_weights(path: str | os.PathLike, allow_pickle: bool = False, opt_in: str = HFVISION_OPT_IN) -> None:
    """Refuse a local model folder whose weights are pickle files only (unless ``allow_pickle``)."""
    if allow_pickle:
        return
    folder = Path(path)
    weights = [p for p in folder.rglob("*") if p.is_file() and p.name.endswith(_WEIGHT_SUFFIXES)]
    if weights and not any(p.name.endswith(".safetensors") for p in weights):
        raise pickle_refusal(str(folder), [str(p.relative_to(folder)) for p in weights], opt_in)


def hub_pickle_files(repo_id: str, revision: str | None = None, token: str | bool | None = None) -> list[str]:
    """The pickle weight files of a Hub repo when it has no safetensors weights (else, or when unreachable, [])."""
    from huggingface_hub import list_repo_files

    try:
        names = list_repo_files(repo_id, revision=revision, token=token)
    except Exception as err:  # noqa: BLE001 - offline, private...: the caller reports its own error
        logger.debug("could not list %s: %s", repo_id, err)
        return []
    if any(n.endswith(".safetensors") for n in names):
        return []
    return [n for n in names if n.endswith(_PICKLE_SUFFIXES)]


def onnx_file(model: str, revision: str | None = None, token: str | bool | None = None) -> str | None:
    """The ONNX file a model folder or Hub repo holds at its root (:data:`ONNX_FILES` order), or ``None``."""
    if os.path.isdir(model):
        return next((name for name in ONNX_FILES if os.path.isfile(os.path.join(model, name))), None)
    from huggingface_hub import constants, file_exists, try_to_load_from_cache

    for name in ONNX_FILES:
        if constants.HF_HUB_OFFLINE:
            if isinstance(try_to_load_from_cache(model, name, revision=revision), str):
                return name
            continue
        try:
            if file_exists(model, name, revision=revision, token=token):
                return name
        except Exception as err:  # noqa: BLE001 - unreachable Hub, private repo...: loading reports the real error
            logger.debug("could not check %s for %s: %s", model, name, err)
            return None
    return None


def verified_snapshot(
    repo_id: str,
    revision: str | None = None,
    allow_pickle: bool = False,
    token: str | bool | None = None,
    onnx: bool = False,
) -> str:
    """Download ``repo_id`` at ``revision`` and check every file against the Hub's hashes; returns the local folder.

    Pickle weights are not downloaded unless ``allow_pickle``; ONNX files only with ``onnx=True``; other
    frameworks' weights (TF, Flax, ...) never.

    Raises:
        `ChecksumMismatchError`: a downloaded file differs from what the Hub recorded (corrupt or tampered).

    >>> folder = verified_snapshot("rizvandwiki/gender-classification")
    """
    from huggingface_hub import HfApi, snapshot_download

    api = HfApi(token=token)
    commit = api.model_info(repo_id, revision=revision, token=token).sha  # pin: download and verify the same commit
    ignore = [p for p in OTHER_FRAMEWORK_PATTERNS if not (onnx and ".onnx" in p)]
    ignore += [] if allow_pickle else list(PICKLE_PATTERNS)
    folder = snapshot_download(repo_id, revision=commit, ignore_patterns=ignore, token=token)
    result = api.verify_repo_checksums(repo_id, revision=commit, token=token)
    if result.mismatches:
        details = "; ".join(
            f"{m['path']} ({m['algorithm']} expected {m['expected'][:16]}..., got {m['actual'][:16]}...)"
            for m in result.mismatches
        )
        raise ChecksumMismatchError(
            f"{repo_id}@{commit[:12]}: {len(result.mismatches)} file(s) differ from the Hub's hashes: {details}. "
            f"The cached copy in {result.verified_path} is corrupt or was modified; delete it and download again"
        )
    if not onnx and not allow_pickle and not any(p.name.endswith(".safetensors") for p in Path(folder).rglob("*")):
        names = [f for f in api.list_repo_files(repo_id, revision=commit, token=token) if f.endswith(_PICKLE_SUFFIXES)]
        if names:
            raise pickle_refusal(repo_id, names)
    logger.info("verified %d file(s) of %s@%s against the Hub's hashes", result.checked_count, repo_id, commit[:12])
    return folder
