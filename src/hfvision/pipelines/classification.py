"""Image classification pipelines: transformers' ``ImageClassificationPipeline`` with batched preprocessing,
face-first mode, ``batch_size="auto"``, readable timm labels and timm test-size evaluation.

``GenderClassificationPipeline`` is the ``"gender-classification"`` task (registered by ``import hfvision``).
``FastImageClassificationPipeline`` is what ``hfvision.pipeline("image-classification", ...)`` builds.

This file and its sibling modules imported below are copied into the model folder by ``save_pretrained`` (the
``custom_pipelines`` mechanism), so they import only torch/numpy/PIL/transformers: the saved pipeline loads with
``pipeline(model=..., trust_remote_code=True)`` where hfvision is not installed. hfvision's extras (safe image
loading, face detection) are looked up at run time and used when present.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from PIL import Image
from transformers import AutoModelForImageClassification
from transformers.pipelines.image_classification import ClassificationFunction, ImageClassificationPipeline
from transformers.utils import logging

from .auto_batch import default_memory_budget, measure_bytes_per_image, pick_batch_size, run_with_oom_backoff
from .image_batching import BatchedImagePreprocessor, _optional_module, _to_pil, load_input_image
from .timm_utils import apply_readable_labels, is_timm_model, test_size_image_processor

logger = logging.get_logger(__name__)

# Same values as hfvision.pipelines.registry (repeated so this file stands alone; a test keeps them equal).
# Revision from the project's reference notes; confirm it when the Hub is reachable.
GENDER_DEFAULT_MODEL = ("rizvandwiki/gender-classification", "380b17658cc037b246aab0b62a20deb7dd607e65")
# The `custom_pipelines` key of a saved gender pipeline (registry.saved_task_key): not the task's own name, which
# would make transformers demand trust_remote_code even where hfvision registers the task.
GENDER_SAVED_TASK = "hfvision-gender-classification"


def _require_hfvision(module: str, feature: str):
    found = _optional_module(module)
    if found is None:
        raise ImportError(f"{feature} needs hfvision (pip install hfvision); it is not installed here")
    return found


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


class FastImageClassificationPipeline(ImageClassificationPipeline):
    """Image classification with batched ``uint8`` preprocessing, face-first mode and ``batch_size="auto"``.

    Same inputs and outputs as transformers' ``ImageClassificationPipeline`` (``[{"label", "score"}]`` per image,
    ``top_k``, ``function_to_apply``), plus:

    Args:
        use_test_size (`bool`, *optional*, defaults to `False`):
            timm models only: preprocess at the model's ``test_input_size``/``test_crop_pct`` (its ``pretrained_cfg``).
        readable_labels (`bool`, *optional*, defaults to `True`):
            timm models only: name ImageNet classes ("tench, Tinca tinca") when the checkpoint stores WordNet
            synsets or generic ``LABEL_i`` names.
        faces (`bool`, *optional*, defaults to `False`; init or call):
            Detect faces, classify each face crop and return ``[{"box", "score_face", "labels"}]`` (``[]`` when
            there is no face).
        face_margin (`float`, *optional*, defaults to 0.25; init or call):
            Context added around each face before classifying it, as a fraction of the face size per side.
        face_detector (*optional*; init or call):
            ``"haar"`` (default, OpenCV), a callable ``(PIL.Image) -> list[FaceBox]``, or a transformers
            ``object-detection`` pipeline whose "face" boxes are used.
        batch_size (`int` or `"auto"`, *optional*):
            ``"auto"`` measures a trial batch and uses the largest power of two fitting the memory budget.

    >>> from hfvision import pipeline
    >>> clf = pipeline("image-classification", model="timm/resnet18.a1_in1k", use_test_size=True)
    >>> clf("photo.jpg", top_k=2)
    [{'label': 'tabby, tabby cat', 'score': 0.61}, {'label': 'tiger cat', 'score': 0.22}]
    """

    def __init__(self, *args, use_test_size: bool = False, readable_labels: bool = True, **kwargs):
        super().__init__(*args, **kwargs)
        if use_test_size:
            self.image_processor = test_size_image_processor(self.model, self.image_processor)
        if readable_labels and is_timm_model(self.model):
            apply_readable_labels(self.model)
        if self.image_processor is None:
            raise ValueError(
                f"{getattr(self.model, 'name_or_path', 'the model')} has no image processor configuration; "
                "pass image_processor=... (e.g. AutoImageProcessor.from_pretrained(<base model>))"
            )
        self.batch_preprocessor = BatchedImagePreprocessor(self.image_processor)
        self._oom_state: dict[str, int] = {}
        self._auto_batch_size: int | None = None

    def check_model_type(self, supported_models):
        # An ONNX Runtime stand-in (hfvision.export.runtime) is no torch module and no transformers class: there is
        # nothing to check it against, and its outputs are the classifier's.
        if isinstance(self.model, torch.nn.Module):
            super().check_model_type(supported_models)

    # -- the four-method contract ---------------------------------------------------------------------------------
    def _sanitize_parameters(
        self, top_k=None, function_to_apply=None, timeout=None, faces=None, face_margin=None, face_detector=None
    ):
        preprocess_params, _, postprocess_params = super()._sanitize_parameters(
            top_k=top_k, function_to_apply=function_to_apply, timeout=timeout
        )
        for name, value in (("faces", faces), ("face_margin", face_margin), ("face_detector", face_detector)):
            if value is not None:
                preprocess_params[name] = value
        return preprocess_params, {}, postprocess_params

    def preprocess(self, image, timeout=None, faces=False, face_margin=0.25, face_detector=None):
        image = load_input_image(image, timeout=timeout)
        if not faces:
            return {"pixel_values": self.batch_preprocessor.prepare(image)}
        face_tools = _require_hfvision("hfvision.pipelines.faces", "face-first classification (faces=True)")
        if not isinstance(image, Image.Image):
            image = _to_pil(image)
        crops = face_tools.face_crops(image, face_detector, face_margin)
        pixel_values = torch.cat([self.batch_preprocessor.prepare(crop) for _, crop in crops]) if crops else None
        return {"pixel_values": pixel_values, "faces": [box for box, _ in crops]}

    def _forward(self, model_inputs):
        # Pixels arrive as uint8 (resized/cropped per image); rescale + normalize run here, once per batch, on the
        # model's device. Batches that run out of memory are split (see auto_batch.run_with_oom_backoff).
        pixel_values = model_inputs["pixel_values"]
        if pixel_values is None:  # face-first mode, no face found
            logits = torch.zeros(0, self.model.config.num_labels)
        else:
            pixel_values = self.batch_preprocessor.normalize(pixel_values, self.dtype)
            logits = run_with_oom_backoff(self._logits, pixel_values, self._oom_state)
        outputs = {"logits": logits}
        if "faces" in model_inputs:
            outputs["faces"] = model_inputs["faces"]
        return outputs

    def postprocess(self, model_outputs, function_to_apply=None, top_k=5):
        rows = self._label_rows(model_outputs["logits"], function_to_apply, top_k)
        if "faces" not in model_outputs:
            return rows[0]
        face_tools = _require_hfvision("hfvision.pipelines.faces", "face-first classification (faces=True)")
        return [face_tools.face_result(box, labels) for box, labels in zip(model_outputs["faces"], rows)]

    def _label_rows(self, logits: torch.Tensor, function_to_apply=None, top_k=5) -> list[list[dict]]:
        """``[{"label", "score"}]`` (best first) for each row of ``logits``."""
        config = self.model.config
        num_labels, id2label = config.num_labels, config.id2label  # config attribute access is slow: read once
        function_to_apply = self._resolve_function(function_to_apply, config, num_labels)
        logits = logits.to(torch.float32).numpy()
        if function_to_apply == ClassificationFunction.SIGMOID:
            scores = 1.0 / (1.0 + np.exp(-logits))
        elif function_to_apply == ClassificationFunction.SOFTMAX:
            scores = _softmax(logits)
        elif function_to_apply == ClassificationFunction.NONE:
            scores = logits
        else:
            raise ValueError(f"Unrecognized `function_to_apply` argument: {function_to_apply}")
        top_k = min(top_k, num_labels) if top_k is not None else num_labels
        rows = []
        for row in scores:
            order = np.argsort(-row, kind="stable")[:top_k]  # descending; ties keep label order, like the stock sort
            rows.append([{"label": id2label[int(i)], "score": row[i].item()} for i in order])
        return rows

    # -- a call in two halves, for servers -------------------------------------------------------------------------
    def prepare(self, image, **kwargs) -> dict:
        """The per-image half of a call: :meth:`preprocess` with call-time parameters (load, resize/crop to uint8).

        Runs on any thread, many at once (whole images; face-first mode stays with the full call, OpenCV's
        cascade classifier is not thread-safe). :meth:`run_prepared` finishes a batch of these.
        """
        preprocess_params, _, _ = self._sanitize_parameters(**kwargs)
        preprocess_params = {**self._preprocess_params, **preprocess_params}
        if preprocess_params.get("faces"):
            raise ValueError("prepare() handles whole images; call the pipeline itself with faces=True")
        return self.preprocess(image, **preprocess_params)

    def run_prepared(self, prepared: list[dict], **kwargs) -> list[list[dict]]:
        """One forward pass over items from :meth:`prepare`, then each item's :meth:`postprocess`.

        Returns what ``self(images, batch_size=len(images), **kwargs)`` returns for the same images.
        """
        _, forward_params, postprocess_params = self._sanitize_parameters(**kwargs)
        postprocess_params = {**self._postprocess_params, **postprocess_params}
        batch = {"pixel_values": torch.cat([item["pixel_values"] for item in prepared])}
        logits = self.forward(batch, **{**self._forward_params, **forward_params})["logits"]
        return self._label_rows(logits, **postprocess_params)  # the rows postprocess() gives one by one

    # -- helpers --------------------------------------------------------------------------------------------------
    def _logits(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.model(pixel_values=pixel_values).logits

    @staticmethod
    def _resolve_function(function_to_apply, config, num_labels: int) -> ClassificationFunction:
        # the stock pipeline's rules, in its order
        if function_to_apply is not None:
            return ClassificationFunction(function_to_apply)
        problem_type = config.problem_type
        if problem_type == "regression":
            return ClassificationFunction.NONE
        if problem_type == "multi_label_classification" or num_labels == 1:
            return ClassificationFunction.SIGMOID
        if problem_type == "single_label_classification" or num_labels > 1:
            return ClassificationFunction.SOFTMAX
        return ClassificationFunction(getattr(config, "function_to_apply", None) or "none")

    def get_inference_context(self):
        return torch.inference_mode

    def __call__(self, inputs=None, **kwargs: Any):
        """Classify one image (-> ``[{"label", "score"}]``) or a list (-> one such list per image).

        Takes the arguments of transformers' image-classification pipeline plus ``faces``, ``face_margin``,
        ``face_detector`` and ``batch_size="auto"`` (see the class docstring).
        """
        if "images" in kwargs:
            inputs = kwargs.pop("images")
        batch_size = kwargs.get("batch_size") or self._batch_size
        if kwargs.get("faces", self._preprocess_params.get("faces")):
            if batch_size not in (None, 1):
                logger.info("faces=True: each image's face crops form one batch; batch_size=%s is ignored", batch_size)
            kwargs["batch_size"] = 1
        elif batch_size == "auto":
            kwargs["batch_size"] = self.auto_batch_size()
        return super().__call__(inputs, **kwargs)

    def auto_batch_size(
        self, memory_budget: int | None = None, max_batch_size: int = 256, trial_batch_size: int = 4
    ) -> int:
        """The largest power-of-two batch whose forward pass fits ``memory_budget`` bytes (measured once, cached).

        Args:
            memory_budget (`int`, *optional*): bytes; defaults to 80% of free accelerator memory, or half of the
                available RAM on CPU.
            max_batch_size (`int`, *optional*, defaults to 256): upper bound.
            trial_batch_size (`int`, *optional*, defaults to 4): images in the measured trial batch.
        """
        if self._auto_batch_size is not None and memory_budget is None:
            return self._auto_batch_size
        trial_image = Image.new("RGB", (256, 256), (127, 127, 127))
        trial = torch.cat([self.batch_preprocessor.prepare(trial_image)] * trial_batch_size).to(self.device)

        def forward(batch):
            with torch.inference_mode():
                return self._logits(self.batch_preprocessor.normalize(batch, self.dtype))

        forward(trial[:1])  # warm-up: one-time allocations are not per-image memory
        per_image, how = measure_bytes_per_image(self.model, forward, trial)
        budget = memory_budget if memory_budget is not None else default_memory_budget(self.device)
        size = pick_batch_size(per_image, budget, max_batch_size)
        logger.info(
            "batch_size='auto': %d (%.1f MB/image measured by %s, budget %.0f MB)",
            size,
            per_image / 1e6,
            how,
            budget / 1e6,
        )
        if memory_budget is None:
            self._auto_batch_size = size
        return size


class GenderClassificationPipeline(FastImageClassificationPipeline):
    """The ``"gender-classification"`` task: an image classifier whose labels come from the model (e.g.
    ``female``/``male``), best used face-first (``faces=True``) on photos of people.

    Default model: ``rizvandwiki/gender-classification`` (ViT-base/16, pinned revision). Its labels describe
    perceived presentation in web photos, not identity; check it on your own data before relying on it.

    >>> import hfvision  # registers the task with transformers
    >>> from transformers import pipeline
    >>> clf = pipeline("gender-classification", model="rizvandwiki/gender-classification")
    >>> clf("portrait.jpg")
    [{'label': 'female', 'score': 0.93}, {'label': 'male', 'score': 0.07}]
    >>> clf("group.jpg", faces=True)
    [{'box': {'xmin': 40, 'ymin': 32, 'xmax': 120, 'ymax': 112}, 'score_face': 0.98, 'labels': [...]}, ...]
    """


# What `PIPELINE_REGISTRY.register_pipeline` would attach; `save_pretrained` reads it to write `custom_pipelines`
# (under GENDER_SAVED_TASK; "pt" names transformers' own class, which a process without hfvision can resolve).
GenderClassificationPipeline._registered_impl = {
    GENDER_SAVED_TASK: {
        "impl": GenderClassificationPipeline,
        "pt": (AutoModelForImageClassification,),
        "default": {"model": GENDER_DEFAULT_MODEL},
        "type": "image",
    }
}
