"""The image-feature-pyramid task against timm's own ``features_only`` model on the same weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch


@pytest.fixture(scope="module")
def fpn(timm_dir):
    from transformers import pipeline

    import hfvision  # noqa: F401 - registers the task

    return pipeline("image-feature-pyramid", model=str(timm_dir), device="cpu", dtype="float32")


def _timm_features(timm_dir, images, out_indices):
    import timm

    model = timm.create_model(f"local-dir:{timm_dir}", pretrained=True, features_only=True, out_indices=out_indices)
    model.eval()
    transform = timm.data.create_transform(**timm.data.resolve_data_config(model=model))
    with torch.inference_mode():
        return model(torch.stack([transform(image) for image in images])), model.feature_info


def test_feature_maps_equal_timm_features_only(fpn, timm_dir, images):
    from hfvision.pipelines.features import ImageFeaturePyramidPipeline

    assert type(fpn) is ImageFeaturePyramidPipeline
    outputs = fpn(images, batch_size=2)  # default: every level from stride 4, i.e. layer1..layer4
    expected, info = _timm_features(timm_dir, images, (1, 2, 3, 4))
    for i, levels in enumerate(outputs):
        assert [lvl["module"] for lvl in levels] == info.module_name() == ["layer1", "layer2", "layer3", "layer4"]
        assert [lvl["channels"] for lvl in levels] == info.channels() == [64, 128, 256, 512]
        assert [lvl["stride"] for lvl in levels] == info.reduction() == [4, 8, 16, 32]
        for lvl, ref in zip(levels, expected):
            assert isinstance(lvl["feature_map"], np.ndarray) and lvl["feature_map"].shape == tuple(ref[i].shape)
            np.testing.assert_allclose(lvl["feature_map"], ref[i].numpy(), rtol=0, atol=1e-5)


def test_requested_levels_in_requested_order(fpn, timm_dir, images):
    levels = fpn(images[1], out_indices=(4, 0, -3), return_tensors=True)
    assert [(lvl["index"], lvl["module"], lvl["stride"]) for lvl in levels] == [
        (4, "layer4", 32),
        (0, "act1", 2),
        (2, "layer2", 8),
    ]
    expected, _ = _timm_features(timm_dir, images[1:2], (0, 2, 4))
    for lvl, ref in zip(levels, (expected[2], expected[0], expected[1])):
        assert isinstance(lvl["feature_map"], torch.Tensor)
        torch.testing.assert_close(lvl["feature_map"], ref[0], rtol=0, atol=1e-5)


@pytest.mark.parametrize(
    "out_indices, message",
    [
        ((1, 5), "5 is out of range for 5 levels"),
        ((2, -3), "repeats a level"),
        ((), "out_indices is empty"),
        ((1.0,), "is not an integer level"),
        ((-6,), "out of range"),
    ],
)
def test_invalid_out_indices_raise_clear_errors(fpn, images, out_indices, message):
    with pytest.raises(ValueError, match=message) as info:
        fpn(images[0], out_indices=out_indices)
    assert "layer4 (stride 32)" in str(info.value) or "repeats" in str(info.value)


def test_non_timm_models_are_refused(vit_dir):
    import hfvision

    with pytest.raises(ValueError, match="image-feature-pyramid supports timm checkpoints"):
        hfvision.pipeline("image-feature-pyramid", model=vit_dir)
