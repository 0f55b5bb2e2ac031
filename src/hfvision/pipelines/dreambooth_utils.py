"""What the DreamBooth pipelines share: ``{token}``/``{class}`` prompt placeholders, family inference, construction
from another pipeline's components, and `save_pretrained` / `push_to_hub` that ship the pipeline's own code.

Self-contained (stdlib + diffusers/huggingface_hub at call time) because it is shipped with saved pipelines and
imported there as remote code without hfvision.

>>> from hfvision.pipelines.dreambooth_utils import expand_prompt
>>> expand_prompt("a photo of {token} {class}", "sks", "dog")
'a photo of sks dog'
"""

from __future__ import annotations

import inspect
import logging
import os
import shutil
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from diffusers import DiffusionPipeline

# A plain stdlib logger under the "hfvision" tree (same as hfvision.utils.get_logger) so this file needs no hfvision.
logger = logging.getLogger("hfvision.pipelines.dreambooth")

PLACEHOLDERS = {"{token}": "instance_token", "{class}": "class_noun"}


def expand_prompt(prompt: str | list[str] | None, instance_token: str | None, class_noun: str | None = None):
    """Replace ``{token}`` with ``instance_token`` and ``{class}`` with ``class_noun`` in one prompt or a list.

    >>> expand_prompt("a photo of {token} {class} on the beach", "sks", "dog")
    'a photo of sks dog on the beach'
    """
    if prompt is None:
        return None
    if isinstance(prompt, (list, tuple)):
        return [expand_prompt(p, instance_token, class_noun) for p in prompt]
    values = {"{token}": instance_token, "{class}": class_noun}
    for placeholder, value in values.items():
        if placeholder in prompt:
            if not value:
                raise ValueError(
                    f"prompt {prompt!r} uses {placeholder} but the pipeline has no {PLACEHOLDERS[placeholder]}; "
                    f"set it with pipe.register_to_config({PLACEHOLDERS[placeholder]}=...) or write it out"
                )
            prompt = prompt.replace(placeholder, value)
    return prompt


def infer_family(unet: Any) -> str | None:
    """``"sdxl"``, ``"sd2"`` or ``"sd1"`` from a UNet (or its config): SDXL has size/text-time conditioning, SD 2.x
    uses linear attention projections."""
    config = getattr(unet, "config", unet)
    if config is None:
        return None
    if config.get("addition_embed_type") == "text_time":
        return "sdxl"
    return "sd2" if config.get("use_linear_projection") else "sd1"


def nearest_multiples(value: int, multiple: int) -> tuple[int, int]:
    """The multiples of ``multiple`` just below and above ``value``."""
    low = max(multiple, value // multiple * multiple)
    return low, low + multiple


class DreamBoothMixin:
    """What the DreamBooth pipelines add to diffusers' pipelines: identifier placeholders, construction from another
    pipeline's components, and shipping their own code on `save_pretrained` / `push_to_hub`."""

    # Files copied next to the weights by save_pretrained; the first one is the `custom_pipeline` module.
    _code_files: tuple[str, ...] = ("dreambooth.py", "dreambooth_utils.py", "controlnet_utils.py")

    @property
    def instance_token(self) -> str | None:
        return self.config.get("instance_token")

    @property
    def class_noun(self) -> str | None:
        return self.config.get("class_noun")

    def expand_prompt(self, prompt: str | list[str] | None):
        """Replace ``{token}`` / ``{class}`` with this pipeline's ``instance_token`` / ``class_noun``."""
        return expand_prompt(prompt, self.instance_token, self.class_noun)

    @classmethod
    def from_components(
        cls,
        pipe_or_components: DiffusionPipeline | Mapping[str, Any],
        instance_token: str | None = None,
        class_noun: str | None = None,
        family: str | None = None,
        **overrides: Any,
    ):
        """Build this pipeline from another pipeline (or a components dict) sharing its modules, no copy.

        Components this class does not take (``safety_checker``, ``feature_extractor``, ...) are dropped. The trainer
        uses this to save its result: ``DreamBoothPipeline.from_components(pipe, instance_token="sks",
        class_noun="dog").save_pretrained(out)``.

        Args:
            pipe_or_components (`DiffusionPipeline` or `dict`): source pipeline or its ``components``.
            instance_token (`str`, *optional*): the trained identifier, e.g. ``"sks"``; kept from a DreamBooth source.
            class_noun (`str`, *optional*): the subject's class, e.g. ``"dog"``.
            family (`str`, *optional*): base family (``"sd1"``, ``"sd2"``, ``"sdxl"``); inferred from the UNet.
            overrides: components to replace, e.g. ``controlnet=...`` or ``scheduler=...``.
        """
        source_config = getattr(pipe_or_components, "config", {}) or {}
        if isinstance(pipe_or_components, DiffusionPipeline):
            components = dict(pipe_or_components.components)
        else:
            components = dict(pipe_or_components)
        components.update(overrides)
        accepted = set(inspect.signature(cls.__init__).parameters) - {"self"}
        if "text_encoder_2" in components and "text_encoder_2" not in accepted:
            raise ValueError(
                f"these are SDXL components; use DreamBoothXLPipeline.from_components instead of {cls.__name__}"
            )
        dropped = sorted(k for k, v in components.items() if k not in accepted and v is not None)
        if dropped:
            logger.info("%s.from_components: not using %s", cls.__name__, ", ".join(dropped))
        kwargs = {k: v for k, v in components.items() if k in accepted}
        required = [n for n, p in inspect.signature(cls.__init__).parameters.items() if p.default is p.empty][1:]
        missing = [n for n in required if n not in kwargs]
        if missing:
            raise ValueError(f"{cls.__name__}.from_components: missing {', '.join(missing)} (an SD 1.x/2.x pipeline goes "
                             "to DreamBoothPipeline, an SDXL one to DreamBoothXLPipeline)")  # fmt: skip
        kwargs["instance_token"] = instance_token or source_config.get("instance_token")
        kwargs["class_noun"] = class_noun or source_config.get("class_noun")
        kwargs["family"] = family or source_config.get("family")
        return cls(**kwargs)

    def save_pipeline_code(self, save_directory: str | os.PathLike) -> list[Path]:
        """Copy this pipeline's module files into ``save_directory`` so diffusers can load it as remote code."""
        source_dir = Path(sys.modules[type(self).__module__].__file__).parent
        written = []
        for name in self._code_files:
            target = Path(save_directory) / name
            shutil.copyfile(source_dir / name, target)
            written.append(target)
        return written

    def save_pretrained(
        self,
        save_directory: str | os.PathLike,
        safe_serialization: bool = True,
        variant: str | None = None,
        max_shard_size: int | str | None = None,
        push_to_hub: bool = False,
        **kwargs: Any,
    ) -> None:
        """`DiffusionPipeline.save_pretrained`, plus the pipeline's code (``dreambooth.py``, ...) so that
        ``DiffusionPipeline.from_pretrained(path_or_repo, custom_pipeline="dreambooth", trust_remote_code=True)``
        works without hfvision. With ``push_to_hub=True`` the code is uploaded with the weights."""
        hub_kwargs = {
            k: kwargs.pop(k) for k in ("commit_message", "private", "create_pr", "token", "repo_id") if k in kwargs
        }
        super().save_pretrained(
            save_directory,
            safe_serialization=safe_serialization,
            variant=variant,
            max_shard_size=max_shard_size,
            push_to_hub=False,
            **kwargs,
        )
        self.save_pipeline_code(save_directory)
        if push_to_hub:
            from diffusers.utils.hub_utils import load_or_create_model_card, populate_model_card
            from huggingface_hub import create_repo

            token = hub_kwargs.get("token")
            repo_id = hub_kwargs.get("repo_id", str(save_directory).split(os.path.sep)[-1])
            repo_id = create_repo(repo_id, exist_ok=True, private=hub_kwargs.get("private"), token=token).repo_id
            card = populate_model_card(load_or_create_model_card(repo_id, token=token, is_pipeline=True))
            card.save(os.path.join(save_directory, "README.md"))
            self._upload_folder(
                save_directory,
                repo_id,
                token=token,
                commit_message=hub_kwargs.get("commit_message"),
                create_pr=hub_kwargs.get("create_pr", False),
            )
