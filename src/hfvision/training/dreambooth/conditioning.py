"""Prompt encoding for training: tokenise captions, run the text encoder(s), optionally cache per caption.

While the text encoder is trained, every step encodes its captions with gradients. While it is frozen and
``pre_compute_text_embeddings`` is on, each distinct caption is encoded once, alone (batch of one, so the result
does not depend on which captions shared its batch), and reused.

Flux and SD3 prompts are encoded by their stock pipelines' own ``encode_prompt`` (CLIP pooled + T5 sequence for
Flux; two CLIPs + T5 for SD3), run on a text-only instance of the pipeline that holds the training modules. A trained
CLIP encoder wrapped for several processes is called through its wrapper, so its gradients are synchronised.
"""

from __future__ import annotations

import torch

from ...utils.logging import get_logger
from .sdxl import encode_prompt_sdxl

logger = get_logger(__name__)


class _CallThrough:
    """A DDP-wrapped text encoder as a pipeline's ``encode_prompt`` uses it: calls run the wrapper (gradient
    synchronisation across processes), attributes come from the wrapped model."""

    def __init__(self, wrapper: torch.nn.Module):
        self._wrapper = wrapper

    def __call__(self, *args, **kwargs):
        return self._wrapper(*args, **kwargs)

    def __getattr__(self, name: str):
        return getattr(self._wrapper.module, name)


class PromptEncoder:
    """Turns a list of captions into UNet conditioning.

    Args:
        family (`str`): ``"sd1"``, ``"sd2"``, ``"sdxl"``, ``"flux"`` or ``"sd3"`` (`hfvision.models.families`).
        tokenizers (`list`): one CLIP tokenizer per text encoder.
        text_encoders (`list[torch.nn.Module]`): modules to call while training (possibly DDP-wrapped).
        frozen_encoders (`list[torch.nn.Module]`): the same modules unwrapped, called without gradients.
        device (`torch.device`): where ids go.
        cache (`bool`): cache embeddings per caption while frozen.
        max_sequence_length (`int`, *optional*): T5 prompt length (Flux, SD3).
    """

    def __init__(
        self,
        family,
        tokenizers,
        text_encoders,
        frozen_encoders,
        device,
        cache: bool = False,
        max_sequence_length: int | None = None,
    ):
        self.family, self.tokenizers = family, tokenizers
        self.text_encoders, self.frozen_encoders = text_encoders, frozen_encoders
        self.device, self.cache_enabled = device, cache
        self.max_sequence_length = max_sequence_length
        self.trainable = False
        self._cache: dict[str, tuple[torch.Tensor, torch.Tensor | None]] = {}

    def set_trainable(self, trainable: bool) -> None:
        self.trainable = trainable
        self._cache.clear()

    def warn_if_truncated(self, captions: list[str]) -> None:
        """Log once if a caption is longer than the tokenizer's limit (it is truncated, like diffusers does)."""
        tokenizer = self.tokenizers[0]
        too_long = [c for c in dict.fromkeys(captions) if len(tokenizer(c).input_ids) > tokenizer.model_max_length]
        if too_long:
            logger.warning(
                "%d caption(s) exceed %d tokens and are truncated, e.g. %r",
                len(too_long),
                tokenizer.model_max_length,
                too_long[0][:80],
            )

    def tokenize(self, captions: list[str]) -> list[torch.Tensor]:
        return [
            tokenizer(
                captions,
                padding="max_length",
                max_length=tokenizer.model_max_length,
                truncation=True,
                return_tensors="pt",
            ).input_ids.to(self.device)
            for tokenizer in self.tokenizers
        ]

    def _encode(self, encoders, captions: list[str]) -> tuple[torch.Tensor, torch.Tensor | None]:
        if self.family in ("flux", "sd3"):
            return self._encode_flow(encoders, captions)
        ids = self.tokenize(captions)
        if self.family == "sdxl":
            return encode_prompt_sdxl(encoders, ids)
        return encoders[0](ids[0])[0], None

    def _encode_flow(self, encoders, captions: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        from .components import FAMILIES, pipeline_class

        spec = FAMILIES[self.family]
        unwrapped = [getattr(e, "module", e) for e in encoders]
        parts = {
            "scheduler": None,
            "vae": None,
            "transformer": None,
            **dict(zip(spec.text_encoders, unwrapped)),
            **dict(zip(spec.tokenizers, self.tokenizers)),
        }
        pipe = pipeline_class(self.family)(**parts)
        for name, encoder in zip(spec.text_encoders, encoders):
            if encoder is not getattr(encoder, "module", encoder):  # DDP-wrapped (trained, several processes)
                # calls go through the wrapper, so its gradients are averaged across processes; attribute reads
                # (.dtype, .config) reach the model. Set past DiffusionPipeline.__setattr__, which would record it in
                # the (throwaway) pipeline's config.
                object.__setattr__(pipe, name, _CallThrough(encoder))
        kwargs = dict(device=self.device, max_sequence_length=self.max_sequence_length)
        if self.family == "flux":
            embeds, pooled, _ = pipe.encode_prompt(captions, prompt_2=None, **kwargs)
        else:
            embeds, _, pooled, _ = pipe.encode_prompt(
                captions, None, None, do_classifier_free_guidance=False, **kwargs
            )
        return embeds, pooled

    def __call__(self, captions: list[str]) -> tuple[torch.Tensor, torch.Tensor | None]:
        if self.trainable:
            return self._encode(self.text_encoders, captions)
        if not self.cache_enabled:
            with torch.no_grad():
                return self._encode(self.frozen_encoders, captions)
        for caption in dict.fromkeys(captions):
            if caption not in self._cache:
                with torch.no_grad():
                    self._cache[caption] = self._encode(self.frozen_encoders, [caption])
        embeds = torch.cat([self._cache[c][0] for c in captions])
        pooled = None if self.family in ("sd1", "sd2") else torch.cat([self._cache[c][1] for c in captions])
        return embeds, pooled
