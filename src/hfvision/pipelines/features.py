"""``"image-feature-pyramid"``: multi-scale feature maps of a timm backbone (loaded through transformers' TimmWrapper).

Per image, the maps of the requested levels (``out_indices``, timm's feature-level numbering: for ResNets
0 = stem ``act1``, 1..4 = ``layer1``..``layer4``) with their channel count and stride. The maps are what
``timm.create_model(..., features_only=True, out_indices=...)`` returns on the same weights and pixels.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import Pipeline
from transformers.utils import logging

from .image_batching import BatchedImagePreprocessor, load_input_image
from .timm_utils import is_timm_model

logger = logging.get_logger(__name__)


class ImageFeaturePyramidPipeline(Pipeline):
    """Feature maps at several strides (a feature pyramid) from a timm model, for detection/segmentation heads.

    Output per image: a list with one entry per requested level, in ``out_indices`` order::

        {"index": 2, "module": "layer2", "channels": 128, "stride": 8, "feature_map": array (C, H, W)}

    Args:
        out_indices (`tuple[int, ...]`, *optional*; init or call):
            Feature levels (negative values count from the last). Defaults to every level with stride >= 4
            (``layer1``..``layer4`` for ResNets). Out-of-range or repeated indices raise a `ValueError`.
        return_tensors (`bool`, *optional*, defaults to `False`): torch tensors instead of numpy arrays.

    >>> import hfvision
    >>> from transformers import pipeline
    >>> fpn = pipeline("image-feature-pyramid", model="timm/resnet18.a1_in1k")
    >>> [(f["module"], f["channels"], f["stride"]) for f in fpn("photo.jpg", out_indices=(2, 4))]
    [('layer2', 128, 8), ('layer4', 512, 32)]
    """

    _load_processor = False
    _load_image_processor = True
    _load_feature_extractor = False
    _load_tokenizer = False

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if not is_timm_model(self.model) or not hasattr(self.model, "timm_model"):
            raise ValueError(
                f"image-feature-pyramid supports timm checkpoints (loaded as TimmWrapperModel); got "
                f"{type(self.model).__name__}. Use a timm model, e.g. model='timm/resnet18.a1_in1k'"
            )
        if getattr(self.model, "features_only", False):
            raise ValueError("load the checkpoint without model_args features_only=True; the pipeline selects levels")
        if self.image_processor is None:
            raise ValueError(f"{self.model.name_or_path}: no preprocessing config (pretrained_cfg) in config.json")
        self.batch_preprocessor = BatchedImagePreprocessor(self.image_processor)

    @property
    def feature_info(self) -> list[dict[str, Any]]:
        """timm's feature levels of the model: ``[{"num_chs", "reduction", "module"}, ...]``."""
        return [dict(level) for level in self.model.timm_model.feature_info]

    def check_out_indices(self, out_indices=None) -> tuple[int, ...]:
        """Validate ``out_indices`` against the model's levels; returns non-negative indices in the given order."""
        info = self.feature_info
        n = len(info)
        if out_indices is None:
            return tuple(i for i, level in enumerate(info) if level["reduction"] >= 4) or tuple(range(n))
        if isinstance(out_indices, int):
            out_indices = (out_indices,)
        levels = ", ".join(f"{i}: {lvl['module']} (stride {lvl['reduction']})" for i, lvl in enumerate(info))
        indices = []
        for i in out_indices:
            if isinstance(i, bool) or not isinstance(i, int):
                raise ValueError(
                    f"out_indices={tuple(out_indices)!r}: {i!r} is not an integer level; levels are {levels}"
                )
            if not -n <= i < n:
                raise ValueError(f"out_indices={tuple(out_indices)!r}: {i} is out of range for {n} levels ({levels})")
            indices.append(i % n)
        if not indices:
            raise ValueError(f"out_indices is empty; choose among the levels {levels}")
        if len(set(indices)) != len(indices):
            raise ValueError(f"out_indices={tuple(out_indices)!r} repeats a level; list each level once")
        return tuple(indices)

    def _sanitize_parameters(self, out_indices=None, timeout=None, return_tensors=None):
        preprocess_params, forward_params, postprocess_params = {}, {}, {}
        if timeout is not None:
            preprocess_params["timeout"] = timeout
        if out_indices is not None:
            forward_params["out_indices"] = self.check_out_indices(out_indices)
        if return_tensors is not None:
            postprocess_params["return_tensors"] = return_tensors
        return preprocess_params, forward_params, postprocess_params

    def preprocess(self, image, timeout=None):
        return {"pixel_values": self.batch_preprocessor.prepare(load_input_image(image, timeout=timeout))}

    def _forward(self, model_inputs, out_indices=None):
        indices = self.check_out_indices(out_indices)
        pixel_values = self.batch_preprocessor.normalize(model_inputs["pixel_values"], self.dtype)
        ascending = sorted(indices)  # timm returns intermediates in level order, whatever order they are asked in
        outputs = self.model(pixel_values=pixel_values, output_hidden_states=ascending, do_pooling=False)
        maps = dict(zip(ascending, outputs.hidden_states))
        # one tensor per key, so transformers' batch iterator can split the batch image by image
        return {f"level_{i}": maps[i] for i in indices}

    def postprocess(self, model_outputs, return_tensors=False):
        info = self.feature_info
        results = []
        for key, tensor in model_outputs.items():
            index = int(key.rsplit("_", 1)[1])
            feature_map = tensor[0] if return_tensors else tensor[0].to(torch.float32).numpy()
            results.append(
                {
                    "index": index,
                    "module": info[index]["module"],
                    "channels": int(tensor.shape[1]),
                    "stride": int(info[index]["reduction"]),
                    "feature_map": feature_map,
                }
            )
        return results

    def get_inference_context(self):
        return torch.inference_mode
