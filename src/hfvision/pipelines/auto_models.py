"""The model classes hfvision's tasks register with transformers: auto classes that load by hfvision's rules.

``transformers.pipeline(task, model="...")`` loads a model named by a string with the classes the task registered
(``PIPELINE_REGISTRY`` entry ``"pt"``) and only then with the config's ``architectures``. hfvision's tasks
(``gender-classification``, ``image-feature-pyramid``) register the classes below, so the stock factory applies the
same rules as ``hfvision.pipeline``:

- safetensors only: pickle weights (``pytorch_model.bin``, ...) are refused unless
  ``model_kwargs={"allow_pickle": True}``;
- ``model_kwargs={"verify": True}``: the Hub snapshot is checked against the Hub's sha256/git hashes first;
- a folder or repo holding an ONNX export (``model.onnx``, or ``model_quantized.onnx`` alone) runs on ONNX Runtime
  (:mod:`hfvision.export.runtime`) behind the same pipeline class and output format;
  ``model_kwargs={"file_name": "model_quantized.onnx"}`` picks the int8 model, ``{"use_onnx": False}`` the
  PyTorch weights of a repo that has both.

Refusals raise :class:`~hfvision.pipelines.loading.LoadRefusedError`, which ``transformers.pipeline`` does not
catch (it would otherwise retry with the config's architecture class and load the refused files).

>>> import hfvision, transformers
>>> clf = transformers.pipeline("gender-classification", model="out/gender-onnx",
...                             model_kwargs={"file_name": "model_quantized.onnx"})  # doctest: +SKIP
"""

from __future__ import annotations

import os
from typing import Any, ClassVar

from transformers import AutoModel, AutoModelForImageClassification

from ..utils.logging import get_logger
from .loading import (
    ONNX_FILES,
    TRANSFORMERS_OPT_IN,
    ChecksumMismatchError,
    LoadRefusedError,
    PickleRefusedError,
    check_local_weights,
    hub_pickle_files,
    onnx_file,
    pickle_refusal,
    verified_snapshot,
)

logger = get_logger(__name__)

#: keyword arguments of OrtModel (ONNX Runtime sessions); everything else is for torch's from_pretrained
_ORT_OPTIONS = ("provider", "session_options", "intra_op_num_threads")


class _HfvisionLoading:
    """``from_pretrained`` with hfvision's rules in front of a transformers auto class (``_auto_class``)."""

    _auto_class: ClassVar[type]
    _ort_class: ClassVar[str]  # class name in hfvision.export.runtime

    @classmethod
    def from_pretrained(
        cls,
        pretrained_model_name_or_path: str | os.PathLike,
        *model_args: Any,
        allow_pickle: bool = False,
        verify: bool = False,
        use_onnx: bool | None = None,
        file_name: str | None = None,
        **kwargs: Any,
    ):
        """Load like ``_auto_class.from_pretrained`` after hfvision's checks; an ONNX export gives an ORT model.

        Args:
            pretrained_model_name_or_path (`str` or `os.PathLike`): Hub id or local folder.
            allow_pickle (`bool`, *optional*, defaults to `False`): also load pickle weights.
            verify (`bool`, *optional*, defaults to `False`): check the Hub snapshot's hashes before loading.
            use_onnx (`bool`, *optional*): ``None`` = ONNX Runtime when the folder/repo holds an ONNX export.
            file_name (`str`, *optional*): the ONNX file (``"model_quantized.onnx"`` for the int8 model).
            kwargs: for ``from_pretrained`` (``revision``, ``token``, ``dtype``, ...) or ONNX Runtime
                (``provider``, ``session_options``, ``intra_op_num_threads``).

        Raises:
            `LoadRefusedError`: pickle weights without ``allow_pickle``, ``verify=True`` on a local folder, files
                that differ from the Hub's hashes, or an ONNX export that does not load (the reason is the
                exception's ``__cause__``).
        """
        source = os.fspath(pretrained_model_name_or_path)
        try:
            return cls._load(source, model_args, allow_pickle, verify, use_onnx, file_name, kwargs)
        except PickleRefusedError as err:
            raise LoadRefusedError(str(pickle_refusal(source, err.files, TRANSFORMERS_OPT_IN))) from err
        except (ChecksumMismatchError, _OptionError) as err:
            raise LoadRefusedError(str(err)) from err

    @classmethod
    def _load(cls, source: str, model_args, allow_pickle, verify, use_onnx, file_name, kwargs: dict):
        revision, token = kwargs.get("revision"), kwargs.get("token")
        local = os.path.isdir(source)
        onnx = None if use_onnx is False else file_name or onnx_file(source, revision, token)
        if use_onnx and onnx is None:
            raise _OptionError(f"{source}: use_onnx=True but it holds no ONNX export ({' or '.join(ONNX_FILES)})")
        if verify:
            if local:
                raise _OptionError(
                    f"verify=True checks files against the hashes the Hub records; {source} is a local folder with "
                    "no such record. Pass a Hub id, or drop verify"
                )
            source = verified_snapshot(source, revision, allow_pickle, token=token, onnx=onnx is not None)
            local, kwargs = True, {k: v for k, v in kwargs.items() if k != "revision"}
        ort_options = {k: kwargs.pop(k) for k in _ORT_OPTIONS if k in kwargs}
        if onnx is not None:
            return cls._load_onnx(source, onnx, ort_options, kwargs)
        if not allow_pickle:
            if local:
                check_local_weights(source)
            kwargs.setdefault("use_safetensors", True)
        try:
            return cls._auto_class.from_pretrained(source, *model_args, **kwargs)
        except OSError as err:
            files = [] if allow_pickle or local else hub_pickle_files(source, revision, token)
            if files:
                raise pickle_refusal(source, files) from err
            raise

    @classmethod
    def _load_onnx(cls, source: str, file_name: str, ort_options: dict, kwargs: dict):
        from ..export import runtime

        dtype = kwargs.get("dtype")
        if dtype not in (None, "auto") and str(dtype).rsplit(".", 1)[-1] != "float32":
            logger.info("%s runs on ONNX Runtime in the dtype it was exported in; dtype=%s is ignored", source, dtype)
        hub = {k: kwargs[k] for k in ("revision", "token") if kwargs.get(k) is not None}
        try:
            model = getattr(runtime, cls._ort_class).from_pretrained(source, file_name=file_name, **hub, **ort_options)
        except (OSError, ValueError, TypeError, RuntimeError) as err:
            # transformers would answer these by loading the config's architecture class: the PyTorch weights,
            # when the caller asked for (or the folder holds) the ONNX export
            raise LoadRefusedError(f"{source}: could not load the ONNX export {file_name}: {err}") from err
        logger.info("loaded %s/%s on ONNX Runtime (%s)", source, file_name, model.providers[0])
        return model


class _OptionError(ValueError):
    """A loading option that cannot apply to this model (reported, never answered by loading it another way)."""


class HfvisionAutoModelForImageClassification(_HfvisionLoading, AutoModelForImageClassification):
    """`AutoModelForImageClassification` with hfvision's loading rules (``gender-classification``'s model class).

    >>> model = HfvisionAutoModelForImageClassification.from_pretrained("out/gender-onnx")  # doctest: +SKIP
    >>> type(model).__name__  # doctest: +SKIP
    'OrtModelForImageClassification'
    """

    _auto_class = AutoModelForImageClassification
    _ort_class = "OrtModelForImageClassification"


class HfvisionAutoModel(_HfvisionLoading, AutoModel):
    """`AutoModel` with hfvision's loading rules (``image-feature-pyramid``'s model class)."""

    _auto_class = AutoModel
    _ort_class = "OrtModelForFeaturePyramid"
