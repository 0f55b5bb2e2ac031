"""Evaluation: DreamBooth quality metrics (CLIP-I, DINO, CLIP-T, prior drift), best-step selection and the
run's HTML report. Names load lazily, so ``import hfvision.evaluation`` does not import torch.

>>> from hfvision.evaluation import evaluate_pipeline, select_best
"""

from __future__ import annotations

from hfvision.utils.lazy import lazy_exports

# CLIP ViT-B/32: the DreamBooth paper does not name its CLIP backbone; B/32 is the usual choice of the
# DreamBench follow-up evaluations, and it costs ~18x fewer image FLOPs than L/14 (4.4 vs 81 GFLOPs), which
# matters because the metrics run at every validation.
DEFAULT_CLIP_MODEL = "openai/clip-vit-base-patch32"
# DINO ViT-S/16: named by the paper for its DINO score.
DEFAULT_DINO_MODEL = "facebook/dino-vits16"

# public name -> submodule that defines it
_LAZY = {
    **dict.fromkeys(["ClipEmbedder", "DinoEmbedder"], "embedders"),
    **dict.fromkeys(
        [
            "METRICS",
            "SubjectReference",
            "drift_score",
            "score_images",
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
    "QualityTracker": "tracking",
    **dict.fromkeys(
        [
            "log_grids_to_tensorboard",
            "metrics_markdown",
            "read_samples",
            "read_tensorboard_scalars",
            "svg_line_chart",
            "validation_grid",
            "write_report",
            "write_run_report",
        ],
        "report",
    ),
}

__all__ = sorted([*_LAZY, "DEFAULT_CLIP_MODEL", "DEFAULT_DINO_MODEL"])

__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
