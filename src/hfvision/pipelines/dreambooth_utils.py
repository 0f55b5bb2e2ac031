"""What the DreamBooth pipelines share: ``{token}``/``{class}`` prompt placeholders, family inference, construction
from another pipeline's components, routing a call to diffusers' ControlNet pipeline, and `save_pretrained` /
`push_to_hub` that ship the pipeline's own code and name it in ``model_index.json`` (``"_class_name": ["dreambooth",
"DreamBoothPipeline"]``), so ``DiffusionPipeline.from_pretrained(repo, trust_remote_code=True)`` returns it.

Self-contained (stdlib + diffusers/huggingface_hub at call time) because it is shipped with saved pipelines and
imported there as remote code without hfvision.

>>> from hfvision.pipelines.dreambooth_utils import expand_prompt
>>> expand_prompt("a photo of {token} {class}", "sks", "dog")
'a photo of sks dog'
"""

from __future__ import annotations

import inspect
import json
import logging
import os
import shutil
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from diffusers import DiffusionPipeline

# A plain stdlib logger under the "hfvision" tree (same as hfvision.utils.get_logger) so this file needs no hfvision.
logger = logging.getLogger("hfvision.pipelines.dreambooth")

# placeholder -> (config key / Python argument, `hfvision generate` flag)
PLACEHOLDERS = {"{token}": ("instance_token", "--token"), "{class}": ("class_noun", "--class-noun")}
# Arguments the DreamBooth pipelines add to their diffusers parent's `__call__` (ControlNet conditioning).
CONTROL_ARGUMENTS = (
    "control_image",
    "controlnet_conditioning_scale",
    "control_guidance_start",
    "control_guidance_end",
)
PROMPT_ARGUMENTS = ("prompt", "prompt_2", "prompt_3", "negative_prompt", "negative_prompt_2", "negative_prompt_3")
# What hfvision adds to a diffusers pipeline's config (constructor arguments of every DreamBooth pipeline).
OWN_CONFIG = ("instance_token", "class_noun", "family", "concepts")
# The DreamBooth pipeline for each denoiser class, named when `from_components` gets another family's components.
PIPELINE_FOR_DENOISER = {
    "UNet2DConditionModel": "DreamBoothPipeline or DreamBoothXLPipeline",
    "FluxTransformer2DModel": "DreamBoothFluxPipeline",
    "SD3Transformer2DModel": "DreamBoothSD3Pipeline",
}


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
                name, flag = PLACEHOLDERS[placeholder]
                raise ValueError(
                    f"prompt {prompt!r} uses {placeholder} but the pipeline has no {name}: pass {name}=... in "
                    f"Python (from_pretrained(path, {name}=...) or from_components(pipe, {name}=...)) or {flag} to "
                    "`hfvision generate`, or write the word out"
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


def _is_default(value: Any, default: Any) -> bool:
    return value is default or (isinstance(value, (bool, int, float, str, tuple)) and value == default)


class DreamBoothMixin:
    """What the DreamBooth pipelines add to diffusers' pipelines: identifier placeholders, construction from another
    pipeline's components, ControlNet routing, and shipping their own code on `save_pretrained` / `push_to_hub`."""

    # Files copied next to the weights by save_pretrained; the first one is the module named in model_index.json.
    _code_files: tuple[str, ...] = ("dreambooth.py", "dreambooth_utils.py", "controlnet_utils.py")
    # The family stored when the constructor gets none (None: inferred from the UNet, SD 1.x vs 2.x).
    _family: str | None = None
    # Class name of the denoiser `from_components` expects (the transformer or UNet).
    _denoiser_class: str = "UNet2DConditionModel"
    # ControlNet-capable pipelines: `check_controlnet_compatible(controlnet, unet)` from their controlnet_utils.py (a
    # reference rather than an import here, so that pipelines shipped without that file load as remote code).
    _check_controlnet: Callable | None = None

    def _init_pipeline(self, arguments: dict[str, Any]) -> None:
        """The body every DreamBooth constructor shares, given its ``locals()``: the diffusers parent's ``__init__``
        with the parent's arguments, the optional ``controlnet`` (checked against the UNet), then hfvision's config
        values (``family`` defaults to the class's, or is inferred from the UNet)."""
        arguments = {k: v for k, v in arguments.items() if k not in ("self", "__class__")}
        own = {name: arguments.pop(name) for name in OWN_CONFIG}
        controlnet = arguments.pop("controlnet", None)
        if controlnet is not None and arguments.get("unet") is not None:
            self._check_controlnet(controlnet, arguments["unet"])
        super().__init__(**arguments)
        if self._check_controlnet is not None:
            self.register_modules(controlnet=controlnet)
        own["family"] = own["family"] or self._family or infer_family(arguments.get("unet"))
        self.register_to_config(**own)

    @property
    def instance_token(self) -> str | None:
        return self.config.get("instance_token")

    @property
    def class_noun(self) -> str | None:
        return self.config.get("class_noun")

    @property
    def concepts(self) -> list[dict]:
        """Every trained subject of a several-subject run (``[{"token", "class_noun", "prompt"}]``), else ``[]``."""
        return list(self.config.get("concepts") or [])

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

        Components and config values this class takes are kept (a base model's ``safety_checker`` and
        ``requires_safety_checker`` included, as in diffusers); others are dropped. The trainer uses this to save its
        result: ``DreamBoothPipeline.from_components(pipe, instance_token="sks", class_noun="dog").save_pretrained(out)``.

        Args:
            pipe_or_components (`DiffusionPipeline` or `dict`): source pipeline or its ``components``.
            instance_token (`str`, *optional*): the trained identifier, e.g. ``"sks"``; kept from a DreamBooth source.
            class_noun (`str`, *optional*): the subject's class, e.g. ``"dog"``.
            family (`str`, *optional*): base family (``"sd1"``, ``"sd2"``, ``"sdxl"``); inferred from the UNet.
            overrides: components or config values to replace, e.g. ``controlnet=...``, ``scheduler=...`` or
                ``safety_checker=None, requires_safety_checker=False``.
        """
        source_config = getattr(pipe_or_components, "config", {}) or {}
        if isinstance(pipe_or_components, DiffusionPipeline):
            components = dict(pipe_or_components.components)
        else:
            components = dict(pipe_or_components)
        denoiser = overrides.get("transformer", components.get("transformer", components.get("unet")))
        found = type(denoiser).__name__
        if denoiser is not None and found != cls._denoiser_class:
            right = PIPELINE_FOR_DENOISER.get(found, "a DreamBooth pipeline of its family")
            raise ValueError(
                f"{cls.__name__}.from_components needs a {cls._denoiser_class}, got a {found}; use {right} instead"
            )
        parameters = inspect.signature(cls.__init__).parameters
        accepted = set(parameters) - {"self"}
        # config values of the source (requires_safety_checker, force_zeros_for_empty_prompt, ...) carry over
        own = {"instance_token", "class_noun", "family", "concepts"}
        modules, _ = cls._get_signature_keys(cls)  # component slots; the config holds (library, class) specs for them
        settings = {k: source_config[k] for k in accepted - own - set(components) - set(modules) if k in source_config}
        components = {**settings, **components, **overrides}
        if "text_encoder_2" in components and "text_encoder_2" not in accepted:
            raise ValueError(
                f"these are SDXL components; use DreamBoothXLPipeline.from_components instead of {cls.__name__}"
            )
        dropped = sorted(k for k, v in components.items() if k not in accepted and v is not None)
        if dropped:
            logger.info("%s.from_components: not using %s", cls.__name__, ", ".join(dropped))
        kwargs = {k: v for k, v in components.items() if k in accepted}
        required = [n for n, p in parameters.items() if p.default is p.empty][1:]
        missing = [n for n in required if n not in kwargs]
        if missing:
            raise ValueError(
                f"{cls.__name__}.from_components: missing {', '.join(missing)} (an SD 1.x/2.x pipeline goes "
                "to DreamBoothPipeline, an SDXL one to DreamBoothXLPipeline)"
            )
        kwargs["instance_token"] = instance_token or source_config.get("instance_token")
        kwargs["class_noun"] = class_noun or source_config.get("class_noun")
        kwargs["family"] = family or source_config.get("family")
        if "concepts" in accepted:
            kwargs["concepts"] = overrides.get("concepts", source_config.get("concepts"))
        return cls(**kwargs)

    @property
    def components(self) -> dict[str, Any]:
        """The pipeline's modules as diffusers lists them; ``controlnet`` only when one is set, so a DreamBooth
        pipeline without ControlNet has exactly its diffusers parent's components."""
        components = super().components
        if components.get("controlnet", True) is None:
            del components["controlnet"]
        return components

    # -- generation: hfvision's additions around the diffusers parent's own __call__ --

    def _call_arguments(self, arguments: dict[str, Any]) -> dict[str, Any]:
        """A ``__call__``'s ``locals()`` as keyword arguments for the parent's, with ``{token}`` / ``{class}``
        expanded in every prompt argument."""
        args = {k: v for k, v in arguments.items() if k not in ("self", "__class__", "kwargs")}
        for name in PROMPT_ARGUMENTS:
            if name in args:
                args[name] = self.expand_prompt(args[name])
        return args

    def _generate(self, call: Callable, controlnet_cls: type, arguments: dict[str, Any], kwargs: dict[str, Any]):
        """Expand placeholders in a ``__call__``'s ``arguments`` (its ``locals()``), then run ``call`` (the diffusers
        parent's ``__call__``) or, with a ControlNet, ``controlnet_cls`` (diffusers' ControlNet pipeline) over this
        pipeline's modules."""
        args = self._call_arguments(arguments)
        control = {name: args.pop(name) for name in CONTROL_ARGUMENTS}
        for name in ("height", "width"):
            value = args.get(name)
            if value is not None and (not isinstance(value, int) or value <= 0 or value % 8 != 0):
                low, high = nearest_multiples(int(value), 8) if isinstance(value, int) and value > 0 else (512, 520)
                raise ValueError(f"{name}={value!r} must be a positive multiple of 8; try {low} or {high}")
        controlnet = getattr(self, "controlnet", None)
        if controlnet is None:
            if control["control_image"] is not None:
                raise ValueError(
                    "`control_image` was given but the pipeline has no ControlNet; pass controlnet=... first"
                )
            return call(self, **args, **kwargs)
        self._check_controlnet(controlnet, self.unet)
        if control["control_image"] is None:
            raise ValueError("this pipeline has a ControlNet: pass `control_image` (e.g. canny_image(photo))")
        args = self._prepare_controlnet_args(args)
        pipe = self.controlnet_pipeline(controlnet_cls)
        accepted = inspect.signature(controlnet_cls.__call__).parameters
        defaults = inspect.signature(call).parameters
        unsupported = [k for k, v in args.items() if k not in accepted and not _is_default(v, defaults[k].default)]
        if unsupported:
            raise ValueError(
                f"{', '.join(unsupported)} cannot be used with a ControlNet ({controlnet_cls.__name__} has no such "
                "argument); leave it at its default or remove the ControlNet"
            )
        args = {k: v for k, v in args.items() if k in accepted}
        image = control.pop("control_image")
        return pipe(**args, image=image, **control, **kwargs)

    def controlnet_pipeline(self, controlnet_cls: type):
        """diffusers' ControlNet pipeline (``controlnet_cls``) over this pipeline's modules (shared, not copied)."""
        components = self.components
        parameters = inspect.signature(controlnet_cls.__init__).parameters
        kwargs = {k: v for k, v in components.items() if k in parameters}
        kwargs.update({k: self.config[k] for k in parameters if k not in components and k in self.config})
        kwargs.update(self._controlnet_pipeline_kwargs())
        cached = self.__dict__.get("_controlnet_pipe")
        if (
            cached is not None
            and type(cached) is controlnet_cls
            and all(getattr(cached, k, None) is v for k, v in kwargs.items() if k in components)
        ):
            pipe = cached
        else:
            pipe = controlnet_cls(**kwargs)
            self.__dict__["_controlnet_pipe"] = pipe
        pipe.set_progress_bar_config(**getattr(self, "_progress_bar_config", {}))
        return pipe

    def _prepare_controlnet_args(self, args: dict[str, Any]) -> dict[str, Any]:
        """Hook: adjust the call's arguments before they go to the ControlNet pipeline."""
        return args

    def _controlnet_pipeline_kwargs(self) -> dict[str, Any]:
        """Constructor arguments of the ControlNet pipeline that are neither components nor config values."""
        return {}

    # -- saving and loading: code shipped with the weights, named in model_index.json --

    def _shipped_class_name(self) -> list[str] | None:
        """``[module, class]`` for model_index.json: the class in this pipeline's MRO defined in ``_code_files[0]``."""
        for klass in type(self).__mro__:
            module = sys.modules.get(klass.__module__)
            if Path(getattr(module, "__file__", "") or "").name == self._code_files[0]:
                return [Path(self._code_files[0]).stem, klass.__name__]
        return None

    @classmethod
    def _dict_from_json_file(cls, json_file: str | os.PathLike) -> dict[str, Any]:
        # model_index.json names this class as remote code (["dreambooth", "DreamBoothPipeline"]) for
        # `DiffusionPipeline.from_pretrained(..., trust_remote_code=True)`. Loading with the class itself needs none
        # of that code: read the entry as the plain class name, so diffusers uses `cls` and runs nothing from the repo.
        config = super()._dict_from_json_file(json_file)
        name = config.get("_class_name")
        if isinstance(name, (list, tuple)) and len(name) == 2 and name[1] == cls.__name__:
            if f"{name[0]}.py" in cls._code_files:
                config["_class_name"] = name[1]
        return config

    def save_pipeline_code(self, save_directory: str | os.PathLike) -> list[Path]:
        """Copy this pipeline's module files into ``save_directory`` so diffusers can load it as remote code."""
        source_dir = Path(__file__).parent  # all shipped files are siblings of this one (also as remote code)
        written = []
        for name in self._code_files:
            target = Path(save_directory) / name
            shutil.copyfile(source_dir / name, target)
            written.append(target)
        return written

    def _upload_folder(self, working_dir: str | os.PathLike, repo_id: str, **kwargs: Any):
        # Overridden only to add an Inference Endpoints handler.py + requirements.txt to every push (both
        # `push_to_hub` and `save_pretrained(push_to_hub=True)` upload through here) when hfvision is installed.
        try:
            from hfvision.hub.endpoints import write_endpoint_files
        except ImportError:  # this file also runs as a Hub repo's own code, where hfvision may be absent
            pass
        else:
            write_endpoint_files(working_dir, "pipeline")
        return super()._upload_folder(working_dir, repo_id, **kwargs)

    def save_pretrained(
        self,
        save_directory: str | os.PathLike,
        safe_serialization: bool = True,
        variant: str | None = None,
        max_shard_size: int | str | None = None,
        push_to_hub: bool = False,
        **kwargs: Any,
    ) -> None:
        """`DiffusionPipeline.save_pretrained`, plus the pipeline's code (``dreambooth.py``, ...) named in
        ``model_index.json`` as ``"_class_name": ["dreambooth", "DreamBoothPipeline"]``, so that
        ``DiffusionPipeline.from_pretrained(path_or_repo, trust_remote_code=True)`` returns this class without
        hfvision. `push_to_hub` goes through here too; with ``push_to_hub=True`` the code is uploaded with the weights.
        """
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
        class_name = self._shipped_class_name()
        if class_name is not None:
            index_path = Path(save_directory) / "model_index.json"
            index = json.loads(index_path.read_text(encoding="utf-8"))
            index["_class_name"] = class_name
            index_path.write_text(json.dumps(index, indent=2, sort_keys=True) + "\n", encoding="utf-8")
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
