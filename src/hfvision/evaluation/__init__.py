"""Evaluation: DreamBooth quality metrics (CLIP-I, DINO, CLIP-T, prior drift), best-step selection and the
run's HTML report. Names load lazily, so ``import hfvision.evaluation`` does not import torch.

>>> from hfvision.evaluation import evaluate_pipeline, select_best
"""

from __future__ import annotations

from hfvision.utils.lazy import lazy_exports

# public name -> submodule that defines it
_LAZY = {
    **dict.fromkeys(["ClipEmbedder", "DinoEmbedder", "DEFAULT_CLIP_MODEL", "DEFAULT_DINO_MODEL"], "embedders"),
    **dict.fromkeys(
        [
            "METRICS",
            "EvaluationResult",
            "append_metrics",
            "cosine_matrix",
            "evaluate_pipeline",
            "generate_images",
            "mean_paired_similarity",
            "mean_pairwise_similarity",
            "read_metrics",
            "select_best",
            "strip_identifier",
        ],
        "dreambooth",
    ),
    **dict.fromkeys(["write_report", "log_grids_to_tensorboard", "validation_grid"], "report"),
}

__all__ = sorted(_LAZY)

__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
