"""Export configs: registered in Optimum's TasksManager, built on Optimum's generators, one contract per family."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hfvision.export import configs as C


def test_every_config_is_registered_in_optimums_tasks_manager():
    from optimum.exporters.tasks import TasksManager

    C.register_with_optimum()
    for library, model_type, tasks, cls in C._REGISTRY:
        for task in tasks:
            constructor = TasksManager._LIBRARY_TO_SUPPORTED_MODEL_TYPES[library][model_type][C.EXPORTER][task]
            assert constructor.func is cls, (library, model_type, task)
    # any timm architecture falls back to the default timm config, as in Optimum
    ctor = TasksManager.get_exporter_config_constructor(
        C.EXPORTER, model_type="efficientnet_b0", task="image-classification", library_name="timm"
    )
    assert ctor.func is C.TimmClassificationOnnxConfig


def test_near_identical_families_share_code_by_subclassing():
    assert issubclass(C.ViTOnnxConfig, C.VisionClassificationOnnxConfig)
    assert issubclass(C.ConvNetOnnxConfig, C.VisionClassificationOnnxConfig)
    assert issubclass(C.TimmFeaturePyramidOnnxConfig, C.TimmClassificationOnnxConfig)
    assert issubclass(C.CLIPTextWithProjectionOnnxConfig, C.CLIPTextOnnxConfig)
    assert issubclass(C.VaeDecoderOnnxConfig, C.VaeEncoderOnnxConfig)
    assert all(issubclass(cls, C.OnnxExportConfig) for *_, cls in C._REGISTRY)
    table = C.supported_architectures()
    assert "vit" in table["transformers"] and "any timm model" in table["timm"]
    assert {"clip-text", "unet-2d-condition", "vae-encoder", "vae-decoder"} <= set(table["diffusers"])


def test_dummy_inputs_come_from_optimum_generators_at_the_requested_size():
    from transformers import PretrainedConfig, ViTConfig

    vit = C.ViTOnnxConfig(ViTConfig(image_size=64), task="image-classification")
    assert vit.validation_sizes() == [(64, 64), (48, 48)]  # native, and 3/4 of it in whole patches
    assert vit.generate_dummy_inputs(batch_size=3)["pixel_values"].shape == (3, 3, 64, 64)
    assert vit.inputs == {"pixel_values": {0: "batch_size", 2: "height", 3: "width"}}
    assert vit.MODEL_KWARGS == {"interpolate_pos_encoding": True}

    timm_cfg = PretrainedConfig.from_dict({"input_size": [3, 224, 224], "fixed_input_size": False})
    timm = C.TimmClassificationOnnxConfig(timm_cfg, task="image-classification")
    assert timm.validation_sizes() == [(224, 224), (160, 160)]
    assert timm.generate_dummy_inputs(batch_size=1, size=(160, 160))["pixel_values"].shape == (1, 3, 160, 160)
    assert timm.inputs["pixel_values"] == {0: "batch_size", 2: "height", 3: "width"}


@pytest.mark.parametrize("family", ["sd1", "sdxl"])
def test_unet_config_inputs_follow_the_unet(family):
    from hfvision.testing import tiny_unet

    unet = tiny_unet(family)
    unet.config.text_encoder_projection_dim = 32  # what Optimum's diffusion helper sets from the text encoder
    cfg = C.UNetOnnxConfig(unet.config, task="semantic-segmentation")
    dummy = cfg.generate_dummy_inputs(batch_size=2, size=(16, 16))
    assert dummy["sample"].shape == (2, 4, 16, 16) and dummy["timestep"].shape == ()
    assert dummy["encoder_hidden_states"].shape[::2] == (2, unet.config.cross_attention_dim)
    if family == "sdxl":
        assert dummy["text_embeds"].shape == (2, 32) and dummy["time_ids"].shape == (2, 6)
    else:
        assert "text_embeds" not in cfg.inputs
    with torch.no_grad():
        (out,) = cfg.flatten_outputs(cfg.call_model(unet, dummy))
    assert out.shape == dummy["sample"].shape


def _tiny_hf_classifier(model_type: str):
    import transformers as T

    common = dict(num_labels=3, image_size=32)
    vit_like = dict(patch_size=8, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, **common)
    cnn = dict(hidden_sizes=[8, 16], depths=[1, 1], num_labels=3)
    configs = {
        "vit": (T.ViTConfig(intermediate_size=16, **vit_like), T.ViTForImageClassification),
        "deit": (T.DeiTConfig(intermediate_size=16, **vit_like), T.DeiTForImageClassification),
        "dinov2": (T.Dinov2Config(mlp_ratio=1, **vit_like), T.Dinov2ForImageClassification),
        "convnext": (T.ConvNextConfig(num_stages=2, **cnn, image_size=32), T.ConvNextForImageClassification),
        "resnet": (T.ResNetConfig(embedding_size=8, layer_type="basic", **cnn), T.ResNetForImageClassification),
        "regnet": (T.RegNetConfig(embedding_size=8, groups_width=8, **cnn), T.RegNetForImageClassification),
    }
    config, cls = configs[model_type]
    torch.manual_seed(0)
    return cls(config).eval()


@pytest.mark.parametrize(
    "model_type", sorted({m for lib, m, *_ in C._REGISTRY if lib == "transformers"})
)  # one contract test per registered transformers family
def test_registered_transformers_family_exports_and_matches_torch(model_type, tmp_path, photos):
    from transformers import ViTImageProcessor

    from hfvision.export import OrtModelForImageClassification, export_onnx

    model = _tiny_hf_classifier(model_type)
    config = C.get_export_config(model, "image-classification", "transformers")
    size = config.validation_sizes()[0]
    processor = ViTImageProcessor(size={"height": size[0], "width": size[1]})
    result = export_onnx(model, tmp_path / "out", processor=processor)
    assert result.validation.passed and {c.inputs for c in result.validation.cases} == {"dummy", "images"}
    assert result.report["components"]["model"]["export_config"] == type(config).__name__
    ort = OrtModelForImageClassification.from_pretrained(tmp_path / "out")
    pixels = processor(images=photos, return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        expected = model(pixel_values=pixels).logits.numpy()
    np.testing.assert_allclose(ort(pixel_values=pixels).logits.numpy(), expected, atol=1e-5)


@pytest.mark.parametrize("name", ["test_resnet", "test_convnext", "test_efficientnet", "test_vit"])
def test_timm_models_export_through_the_default_timm_config(name, tmp_path):
    """timm's own tiny test models (one per family, incl. a fixed-size ViT), exported as objects."""
    import timm
    from transformers import AutoConfig

    from hfvision.export import export_onnx

    torch.manual_seed(0)
    model = timm.create_model(name, pretrained=False, num_classes=4).eval()
    result = export_onnx(model, tmp_path / "out")
    fixed = model.pretrained_cfg.get("fixed_input_size", False)
    assert result.validation.passed
    assert len({c.size for c in result.validation.cases}) == (1 if fixed else 2)
    assert AutoConfig.from_pretrained(tmp_path / "out").model_type == "timm_wrapper"  # TimmWrapper-loadable config
    import onnxruntime as ort

    x = torch.rand(2, 3, 160, 160) if fixed else torch.rand(2, 3, 96, 128)
    session = ort.InferenceSession(str(tmp_path / "out" / "model.onnx"), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        np.testing.assert_allclose(session.run(None, {"pixel_values": x.numpy()})[0], model(x).numpy(), atol=1e-4)
