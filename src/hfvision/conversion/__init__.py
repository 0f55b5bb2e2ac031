"""diffusers <-> single-file Stable Diffusion checkpoints (AUTOMATIC1111 / ComfyUI layout), offline; LoRA files
between the diffusers and kohya layouts (:mod:`~hfvision.conversion.lora`); ModelSpec headers
(:mod:`~hfvision.conversion.modelspec`).

Key tables are data (:mod:`~hfvision.conversion.keys`) generated from the model configs; the
functions applying them are pure (:mod:`~hfvision.conversion.mapping`). Loading reuses diffusers'
own ``from_single_file`` with configs stored in the file header or bundled with hfvision.

>>> from hfvision.conversion import to_single_file, from_single_file, detect_family
>>> to_single_file("my-dreambooth-model", "model.safetensors", metadata={"trigger_word": "sks"})
>>> detect_family("model.safetensors")
('sd1', 'epsilon')
>>> pipe = from_single_file("model.safetensors")
"""

from __future__ import annotations

from hfvision.utils.lazy import lazy_exports

# public name -> submodule (imported on first use so `import hfvision.conversion` stays light)
_LAZY = {
    "to_single_file": "single_file",
    "from_single_file": "loading",
    "detect_family": "loading",
    "inspect_single_file": "loading",
    "read_pickle_checkpoint": "loading",
    "SingleFileInfo": "loading",
    "pipeline_to_original": "mapping",
    "apply_key_map": "mapping",
    "rename_keys": "mapping",
    "unet_key_pairs": "keys",
    "vae_key_pairs": "keys",
    "open_clip_key_pairs": "keys",
    "KeyMap": "keys",
    "LAYOUTS": "keys",
    "FAMILIES": "keys",
    "BASES": "configs",
    "bundled_configs": "configs",
    "compare_state_dicts": "verify",
    "compare_pipelines": "verify",
    "verify_single_file": "verify",
    "StateDictComparison": "verify",
    "convert_lora": "lora",
    "diffusers_to_kohya": "lora",
    "kohya_to_diffusers": "lora",
    "modelspec_metadata": "modelspec",
}
__all__ = sorted(_LAZY)


__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
