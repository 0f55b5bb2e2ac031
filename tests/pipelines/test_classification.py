"""The gender-classification task and FastImageClassificationPipeline against transformers' stock pipeline and timm."""

from __future__ import annotations

import numpy as np
import pytest
import torch


def test_registered_task_matches_the_stock_pipeline(vit_dir, gender_pipe, stock_vit, images, same_predictions):
    from transformers import ImageClassificationPipeline, pipeline

    from hfvision.pipelines.classification import GenderClassificationPipeline

    via_transformers = pipeline("gender-classification", model=str(vit_dir), device="cpu")
    assert type(via_transformers) is GenderClassificationPipeline
    assert isinstance(gender_pipe, ImageClassificationPipeline) and type(gender_pipe) is GenderClassificationPipeline
    # one image at a time: identical floats to the stock pipeline on the same weights
    assert gender_pipe(images[0]) == stock_vit(images[0]) == via_transformers(images[0])
    assert gender_pipe(images, batch_size=1) == stock_vit(images)
    for kwargs in ({"top_k": 1}, {"function_to_apply": "sigmoid"}, {"function_to_apply": "none", "top_k": 7}):
        assert gender_pipe(images[2], **kwargs) == stock_vit(images[2], **kwargs)
    # batched: the same labels in the same order; scores differ only by float32 summation order
    same_predictions(gender_pipe(images, batch_size=3), stock_vit(images))
    assert {p["label"] for p in gender_pipe(images[1])} == set(gender_pipe.model.config.id2label.values())


def test_registry_entry_and_saved_custom_pipeline_info_agree():
    from transformers import AutoModel, AutoModelForImageClassification
    from transformers.pipelines import PIPELINE_REGISTRY, check_task

    from hfvision.pipelines import classification, registry

    _, entry, _ = check_task("gender-classification")
    default = (registry.GENDER_DEFAULT_MODEL, registry.GENDER_DEFAULT_REVISION)
    assert entry["default"]["model"] == default == classification.GENDER_DEFAULT_MODEL
    # the registered model classes are hfvision's loaders around transformers' auto classes (auto_models.py)
    assert [c._auto_class for c in entry["pt"]] == [AutoModelForImageClassification] and entry["type"] == "image"
    saved_key = registry.saved_task_key("gender-classification")
    assert saved_key == classification.GENDER_SAVED_TASK != "gender-classification"
    assert registry.task_of_saved_key(saved_key) == "gender-classification"
    saved = classification.GenderClassificationPipeline._registered_impl[saved_key]
    assert saved["impl"] is classification.GenderClassificationPipeline
    # the saved entry names transformers' own class: a process without hfvision must resolve it
    assert saved["pt"] == (AutoModelForImageClassification,)
    assert {k: saved[k] for k in ("default", "type")} == {k: entry[k] for k in ("default", "type")}
    assert [c._auto_class for c in check_task("image-feature-pyramid")[1]["pt"]] == [AutoModel]
    # `import hfvision` after transformers.pipelines: registered at once. (The import-hook path, for `import hfvision`
    # before transformers, runs in a fresh process in test_hub_roundtrip.py.)
    for task in registry.TASKS:
        del PIPELINE_REGISTRY.supported_tasks[task]
    registry.install_registration_hook()
    assert set(registry.TASKS) <= set(PIPELINE_REGISTRY.get_supported_tasks())


def test_batched_preprocessing_is_bit_identical_to_the_image_processor(vit_dir, timm_dir, images):
    from transformers import AutoImageProcessor, ConvNextImageProcessor

    from hfvision.pipelines.image_batching import BatchedImagePreprocessor

    cases = {
        "torchvision": AutoImageProcessor.from_pretrained(vit_dir),  # ViTImageProcessor (torchvision backend)
        "timm": AutoImageProcessor.from_pretrained(timm_dir),  # TimmWrapperImageProcessor, from pretrained_cfg
        "processor": ConvNextImageProcessor(size={"shortest_edge": 48}, crop_pct=0.875),  # custom _preprocess
    }
    for mode, processor in cases.items():
        prep = BatchedImagePreprocessor(processor)
        assert prep.mode == mode
        prepared = [prep.prepare(image) for image in images]  # images of four different sizes
        if mode != "processor":
            assert all(p.dtype == torch.uint8 for p in prepared)
        batch = prep.normalize(torch.cat(prepared))
        assert torch.equal(batch, processor(images, return_tensors="pt")["pixel_values"]), mode
    # arrays and tensors are accepted like PIL images
    prep = BatchedImagePreprocessor(cases["torchvision"])
    array = np.asarray(images[0])
    assert torch.equal(prep.prepare(array), prep.prepare(images[0]))
    assert torch.equal(prep.prepare(torch.from_numpy(array).permute(2, 0, 1)), prep.prepare(images[0]))


def test_timm_checkpoint_matches_timm_and_the_stock_pipeline(timm_dir, images, same_predictions):
    import timm
    from transformers import pipeline as hf_pipeline

    import hfvision

    pipe = hfvision.pipeline("image-classification", model=timm_dir)
    assert type(pipe).__name__ == "FastImageClassificationPipeline" and pipe.batch_preprocessor.mode == "timm"
    model = timm.create_model(f"local-dir:{timm_dir}", pretrained=True).eval()
    transform = timm.data.create_transform(**timm.data.resolve_data_config(model=model))
    with torch.inference_mode():
        probs = model(torch.stack([transform(image) for image in images])).softmax(-1)
    expected = [[{"label": f"LABEL_{i}", "score": p[i].item()} for i in p.topk(3).indices] for p in probs]
    same_predictions(pipe(images, batch_size=4, top_k=3), expected)
    stock = hf_pipeline("image-classification", model=str(timm_dir), device="cpu", dtype="float32")
    same_predictions(pipe(images, top_k=10), stock(images, top_k=10))

    # use_test_size: timm's test-time data config (288 px, crop 1.0) from the checkpoint's pretrained_cfg
    test_pipe = hfvision.pipeline("image-classification", model=timm_dir, use_test_size=True)
    config = timm.data.resolve_data_config(model=model, use_test_size=True)
    assert config["input_size"] == (3, 288, 288) and config["crop_pct"] == 1.0
    test_transform = timm.data.create_transform(**config)
    prep = test_pipe.batch_preprocessor
    assert torch.equal(prep.normalize(prep.prepare(images[2])), test_transform(images[2])[None])
    with torch.inference_mode():
        p = model(test_transform(images[2])[None]).softmax(-1)[0]
    same_predictions(
        test_pipe(images[2], top_k=2), [{"label": f"LABEL_{i}", "score": p[i].item()} for i in p.topk(2).indices]
    )


def test_use_test_size_needs_a_timm_model(vit_dir):
    import hfvision

    with pytest.raises(ValueError, match="use_test_size=True needs a timm checkpoint"):
        hfvision.pipeline("image-classification", model=vit_dir, use_test_size=True)


def test_imagenet_label_names_for_synset_labels(tmp_path, images):
    from timm.data import ImageNetInfo
    from transformers import pipeline as hf_pipeline

    import hfvision
    from hfvision.pipelines.timm_utils import readable_labels
    from hfvision.testing import save_tiny_timm_resnet

    info = ImageNetInfo("imagenet-1k")
    save_tiny_timm_resnet(tmp_path, num_classes=1000, label_names=info.label_names())  # synsets, as timm saves them
    stock = hf_pipeline("image-classification", model=str(tmp_path), device="cpu", dtype="float32")(images[1])
    ours = hfvision.pipeline("image-classification", model=tmp_path)(images[1])
    assert all(p["label"].startswith("n") and p["label"][1:].isdigit() for p in stock)  # what users get today
    assert [p["label"] for p in ours] == [info.label_name_to_description(p["label"]) for p in stock]
    assert [p["score"] for p in ours] == [p["score"] for p in stock]
    assert readable_labels({i: f"LABEL_{i}" for i in range(1000)}, 1000)[1] == "goldfish, Carassius auratus"
    assert readable_labels({0: "cat", 1: "dog"}, 2) is None  # already readable: untouched


def test_auto_batch_size_and_out_of_memory_backoff(vit_dir, images, same_predictions, monkeypatch):
    import hfvision
    from hfvision.pipelines.auto_batch import is_oom_error, pick_batch_size

    assert pick_batch_size(10_000_000, 1_000_000_000) == 64 and pick_batch_size(10, 1, 256) == 1
    assert pick_batch_size(1, 10**12, max_batch_size=100) == 64
    pipe = hfvision.pipeline("gender-classification", model=vit_dir)
    reference = pipe(images, batch_size=1)
    assert pipe.auto_batch_size(memory_budget=1) == 1
    assert pipe.auto_batch_size(memory_budget=10**13, max_batch_size=32) == 32
    same_predictions(pipe(images, batch_size="auto"), reference)
    assert pipe._auto_batch_size >= 1

    real_forward = pipe.model.forward

    def forward_that_fits_two(pixel_values=None, **kwargs):
        if pixel_values.shape[0] > 2:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (simulated)")
        return real_forward(pixel_values=pixel_values, **kwargs)

    monkeypatch.setattr(pipe.model, "forward", forward_that_fits_two)
    same_predictions(pipe(images, batch_size=4), reference)
    assert pipe._oom_state["chunk"] == 2  # remembered for the next batches
    assert is_oom_error(RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 1 GB"))
    assert not is_oom_error(RuntimeError("shape mismatch"))


@pytest.mark.parametrize("which", ["vit", "timm"])
def test_prepare_then_run_prepared_equals_one_batched_call(which, vit_dir, timm_dir, images):
    """The two-halves API the server uses: per-image prepare() on several threads, then run_prepared()."""
    from concurrent.futures import ThreadPoolExecutor

    import hfvision

    task = "gender-classification" if which == "vit" else "image-classification"
    pipe = hfvision.pipeline(task, model=vit_dir if which == "vit" else timm_dir)
    with ThreadPoolExecutor(3) as pool:
        prepared = list(pool.map(lambda image: pipe.prepare(image, top_k=2), images))
    expected = pipe(images, batch_size=len(images), top_k=2)
    assert pipe.run_prepared(prepared, top_k=2) == expected  # same batch, same numbers: exact equality
    assert pipe.run_prepared(prepared[:1], function_to_apply="none", top_k=1)[0] == pipe(
        images[0], function_to_apply="none", top_k=1
    )
    with pytest.raises(ValueError, match="faces=True"):
        pipe.prepare(images[0], faces=True)
