"""Image and text embedders behind the DreamBooth quality metrics, loaded through transformers' Auto classes.

* [`ClipEmbedder`]: a CLIP model's projected image and text embeddings (CLIP-I, CLIP-T).
* [`DinoEmbedder`]: a self-supervised ViT's CLS token (DINO score, prior drift).

Every embedding comes back L2-normalised, so a dot product is a cosine similarity.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch

from ..utils.logging import get_logger
from . import DEFAULT_CLIP_MODEL, DEFAULT_DINO_MODEL

logger = get_logger(__name__)


def _features(output) -> torch.Tensor:
    """``get_*_features`` returns a tensor (transformers 4) or an output whose ``pooler_output`` is projected (5)."""
    return output if isinstance(output, torch.Tensor) else output.pooler_output


def _normalize(x: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.normalize(x.float(), dim=-1)


def _hub_kwargs(revision: str | None, local_files_only: bool) -> dict:
    """The ``from_pretrained`` arguments shared by a model, its config and its processor."""
    return {"revision": revision, **({"local_files_only": True} if local_files_only else {})}


def _load_model(name_or_path, hub_kwargs: dict, allow_pickle: bool, **model_kwargs):
    """``AutoModel.from_pretrained`` with hfvision's weight policy: safetensors only unless ``allow_pickle``."""
    from transformers import AutoModel

    from ..pipelines.loading import check_local_weights, pickle_refusal

    if os.path.isdir(name_or_path):
        check_local_weights(name_or_path, allow_pickle)
    try:
        return AutoModel.from_pretrained(
            name_or_path, use_safetensors=None if allow_pickle else True, **model_kwargs, **hub_kwargs
        )
    except OSError as err:
        if not allow_pickle and "safetensors" in str(err):
            raise pickle_refusal(str(name_or_path)) from err
        raise


class _Embedder:
    batch_size = 16
    default_model: str  # what from_pretrained loads when given no name

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | os.PathLike | None = None,
        revision: str | None = None,
        device: str | torch.device | None = None,
        local_files_only: bool = False,
        allow_pickle: bool = False,
    ) -> _Embedder:
        """Load from a Hub id or a local folder (default: the class's ``default_model``) with transformers' Auto
        classes.

        Weights must be safetensors unless ``allow_pickle=True`` (pickle files can run code when loaded).
        """
        name_or_path = cls.default_model if name_or_path is None else name_or_path
        model, processor = cls._load(name_or_path, _hub_kwargs(revision, local_files_only), allow_pickle)
        return cls(model, processor, device)

    @classmethod
    def _load(cls, name_or_path, hub_kwargs: dict, allow_pickle: bool) -> tuple:
        raise NotImplementedError

    def __init__(self, model, processor, device: str | torch.device | None = None):
        self.model = model.eval()
        if device is not None:
            self.model.to(device)
        self.processor = processor

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def _pixels(self, images: Sequence) -> torch.Tensor:
        image_processor = getattr(self.processor, "image_processor", self.processor)
        pixels = image_processor(images=[image.convert("RGB") for image in images], return_tensors="pt")
        return pixels["pixel_values"].to(self.device, self.model.dtype)

    def _image_batch(self, pixel_values: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    @torch.no_grad()
    def embed_images(self, images: Sequence) -> torch.Tensor:
        """L2-normalised embeddings, one row per PIL image (float32, on CPU)."""
        if not images:
            raise ValueError("embed_images needs at least one image")
        rows = [
            self._image_batch(self._pixels(images[i : i + self.batch_size]))
            for i in range(0, len(images), self.batch_size)
        ]
        return _normalize(torch.cat(rows)).cpu()


class ClipEmbedder(_Embedder):
    """CLIP image and text embeddings (after the projection heads), L2-normalised.

    Args:
        model (`transformers.CLIPModel`): any model with ``get_image_features`` / ``get_text_features``.
        processor (`transformers.CLIPProcessor`): its image processor and tokenizer.
        device (`str` or `torch.device`, *optional*): moves the model there.

    Example:

    ```py
    >>> from hfvision.evaluation import ClipEmbedder
    >>> clip = ClipEmbedder.from_pretrained()  # openai/clip-vit-base-patch32  # doctest: +SKIP
    >>> clip.embed_texts(["a photo of a dog"]).shape  # doctest: +SKIP
    torch.Size([1, 512])
    ```
    """

    default_model = DEFAULT_CLIP_MODEL

    @classmethod
    def _load(cls, name_or_path, hub_kwargs: dict, allow_pickle: bool) -> tuple:
        """``AutoModel`` (a CLIP-style model, or an error) + ``AutoProcessor``."""
        from transformers import AutoProcessor

        model = _load_model(name_or_path, hub_kwargs, allow_pickle)
        if not hasattr(model, "get_text_features"):
            raise ValueError(
                f"{name_or_path} loads as {type(model).__name__}, not a CLIP-style model; pass a CLIP model"
            )
        return model, AutoProcessor.from_pretrained(name_or_path, **hub_kwargs)

    def _image_batch(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return _features(self.model.get_image_features(pixel_values=pixel_values))

    @torch.no_grad()
    def embed_texts(self, texts: Sequence[str]) -> torch.Tensor:
        """L2-normalised text embeddings, one row per text (truncated at the tokenizer's length, float32 on CPU)."""
        tokenizer = getattr(self.processor, "tokenizer", self.processor)
        tokens = tokenizer(list(texts), padding=True, truncation=True, return_tensors="pt").to(self.device)
        features = self.model.get_text_features(input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"])
        return _normalize(_features(features)).cpu()


class DinoEmbedder(_Embedder):
    """The CLS token of a self-supervised ViT (DINO), L2-normalised: the paper's subject-fidelity embedding.

    Args:
        model (`transformers.ViTModel` or similar): any model whose output has ``last_hidden_state``.
        processor (`transformers.ViTImageProcessor`): its image processor.
        device (`str` or `torch.device`, *optional*): moves the model there.
    """

    default_model = DEFAULT_DINO_MODEL

    @classmethod
    def _load(cls, name_or_path, hub_kwargs: dict, allow_pickle: bool) -> tuple:
        """``AutoModel`` (no pooler for a ViT) + ``AutoImageProcessor``."""
        from transformers import AutoConfig, AutoImageProcessor

        config = AutoConfig.from_pretrained(name_or_path, **hub_kwargs)
        # DINO checkpoints carry no pooler; only the CLS token is used, so do not build (and report) one.
        extra = {"add_pooling_layer": False} if config.model_type == "vit" else {}
        model = _load_model(name_or_path, hub_kwargs, allow_pickle, config=config, **extra)
        return model, AutoImageProcessor.from_pretrained(name_or_path, **hub_kwargs)

    def _image_batch(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.model(pixel_values=pixel_values).last_hidden_state[:, 0]
