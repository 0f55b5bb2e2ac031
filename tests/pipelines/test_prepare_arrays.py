"""The server's two-halves path with decoded arrays: prepare() on an (H, W, 3) uint8 array (what
hfvision.data.decode_jpeg returns) equals prepare() on the PIL image, and run_prepared() on such arrays equals one
batched pipeline call on the PIL images, exactly."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch

from hfvision.data.image_io import decode_jpeg, load_image

pytestmark = pytest.mark.filterwarnings("ignore:The given NumPy array is not writable")


@pytest.fixture(scope="module", params=["vit", "timm"])
def pipe(request, vit_dir, timm_dir):
    import hfvision
    from hfvision.pipelines.classification import FastImageClassificationPipeline

    model = vit_dir if request.param == "vit" else timm_dir
    pipe = hfvision.pipeline("image-classification", model=str(model))
    assert isinstance(pipe, FastImageClassificationPipeline)
    assert pipe.batch_preprocessor.mode == ("torchvision" if request.param == "vit" else "timm")
    return pipe


def jpeg(image, **kwargs) -> bytes:
    buf = io.BytesIO()
    image.save(buf, "JPEG", **kwargs)
    return buf.getvalue()


@pytest.fixture(scope="module")
def jpegs(images):
    """JPEG bytes of the four sample photos (four sizes), one with an EXIF rotation and one grayscale."""
    from PIL import Image

    exif = Image.Exif()
    exif[0x0112] = 6
    return [
        jpeg(images[0]),
        jpeg(images[1], exif=exif),
        jpeg(images[2].convert("L"), quality=80),
        jpeg(images[3], progressive=True),
    ]


def test_prepare_of_an_array_equals_prepare_of_the_image(pipe, images):
    for image in images:
        array = np.asarray(image)
        assert array.dtype == np.uint8 and array.shape == (image.height, image.width, 3)
        got, want = pipe.prepare(array)["pixel_values"], pipe.prepare(image)["pixel_values"]
        assert got.dtype == want.dtype and got.shape == want.shape
        assert torch.equal(got, want)
        # a writable copy (what cv2.imdecode returns) too
        assert torch.equal(pipe.prepare(array.copy())["pixel_values"], want)


def test_prepare_of_decoded_jpegs_equals_prepare_of_load_image(pipe, jpegs):
    for data in jpegs:
        array = decode_jpeg(data)
        assert array is not None
        assert torch.equal(pipe.prepare(array)["pixel_values"], pipe.prepare(load_image(data))["pixel_values"])


@pytest.mark.parametrize(
    "kwargs", [{}, {"top_k": 2}, {"function_to_apply": "none", "top_k": 1}, {"function_to_apply": "sigmoid"}], ids=str
)
def test_run_prepared_on_arrays_equals_one_batched_call(pipe, images, jpegs, kwargs):
    arrays = [np.asarray(image) for image in images]
    expected = pipe(images, batch_size=len(images), **kwargs)
    assert pipe.run_prepared([pipe.prepare(a, **kwargs) for a in arrays], **kwargs) == expected
    # decoded JPEGs (the server's path) against the pipeline on load_image's images of the same bytes
    decoded = [decode_jpeg(data) for data in jpegs]
    expected = pipe([load_image(data) for data in jpegs], batch_size=len(jpegs), **kwargs)
    assert pipe.run_prepared([pipe.prepare(a, **kwargs) for a in decoded], **kwargs) == expected


def test_run_prepared_rows_equal_postprocess_row_by_row(pipe, images):
    prepared = [pipe.prepare(np.asarray(image)) for image in images]
    k = min(3, pipe.model.config.num_labels)  # the tiny ViT has 2 labels, the timm ResNet 10
    rows = pipe.run_prepared(prepared, top_k=k)
    assert len(rows) == len(images) and all(len(row) == k for row in rows)
    batch = {"pixel_values": torch.cat([p["pixel_values"] for p in prepared])}
    logits = pipe.forward(batch)["logits"]
    for i, row in enumerate(rows):
        assert row == pipe.postprocess({"logits": logits[i : i + 1]}, top_k=k)
    # a batch of one equals the single call exactly
    assert pipe.run_prepared(prepared[:1])[0] == pipe(images[0])


@pytest.mark.parametrize(
    "size", [(40, 2), (2, 40), (1, 40), (3, 40), (40, 1), (40, 3), (1, 1), (3, 3)], ids=lambda s: f"{s[0]}x{s[1]}"
)
def test_thin_decoded_jpegs_equal_their_pil_image(pipe, size):
    """Thin decoded JPEGs prepare like their PIL image, except arrays 1 or 3 px high on transformers processors:
    those read as channels-first there (transformers' array convention), so the server decodes them with PIL."""
    from hfvision.testing import sample_image

    data = jpeg(sample_image("coffee").resize(size))
    array = decode_jpeg(data)
    assert array.shape == (size[1], size[0], 3)
    if pipe.batch_preprocessor.mode == "torchvision" and size[1] in (1, 3):
        from hfvision.pipelines.image_batching import is_channels_last_rgb

        assert not is_channels_last_rgb(
            array
        )  # left to transformers' reading (test_endpoint: the server uses PIL here)
        return
    got, want = pipe.prepare(array)["pixel_values"], pipe.prepare(load_image(data))["pixel_values"]
    assert got.shape == want.shape and torch.equal(got, want)
