"""``huggingface_hub.InferenceClient(base_url=...)`` against the real server: image classification and
text-to-image, results equal to running the pipelines directly."""

from __future__ import annotations

import io

import numpy as np
import pytest

pytest.importorskip("fastapi", reason="the [serve] extra (fastapi) is not installed")
httpx = pytest.importorskip("httpx")


@pytest.fixture
def online_client(monkeypatch):
    """InferenceClient factory. The suite runs with HF_HUB_OFFLINE=1, which makes huggingface_hub refuse every
    request (it checks ``constants.HF_HUB_OFFLINE`` per request); the client only talks to our loopback server,
    so offline mode is lifted for this test alone."""
    from huggingface_hub import InferenceClient, constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    return lambda url: InferenceClient(base_url=url, timeout=60)


def test_image_classification(vit_pipe, photo_bytes, serve, online_client, tmp_path):
    from hfvision.data import load_image
    from hfvision.serving import ServeConfig, create_app

    server = serve(create_app(ServeConfig(task="gender-classification", model="tiny-vit"), pipe=vit_pipe))
    photo = tmp_path / "astronaut.png"
    photo.write_bytes(photo_bytes["astronaut-png"])
    image = load_image(photo_bytes["astronaut-png"])
    for url in (server.url, server.url + "/models/tiny-vit"):
        client = online_client(url)
        # raw bytes (no parameters), a file path, and JSON with parameters
        for source in (photo_bytes["astronaut-png"], str(photo)):
            got = client.image_classification(source)
            assert [(e.label, e.score) for e in got] == [(r["label"], r["score"]) for r in vit_pipe(image)]
        got = client.image_classification(photo_bytes["astronaut-png"], top_k=1, function_to_apply="sigmoid")
        want = vit_pipe(image, top_k=1, function_to_apply="sigmoid")
        assert [(e.label, e.score) for e in got] == [(r["label"], r["score"]) for r in want]
    # an error reaches the client as an HTTP error carrying the server's reason
    from huggingface_hub.errors import HfHubHTTPError

    with pytest.raises(HfHubHTTPError, match="bad image"):
        online_client(server.url).image_classification(b"not an image at all")


@pytest.fixture(scope="module")
def sd_pipe(tiny_model_dir):
    from hfvision.models import load_pipeline

    return load_pipeline(str(tiny_model_dir("sd1")))


def test_text_to_image(sd_pipe, serve, online_client):
    import torch
    from PIL import Image

    from hfvision.serving import ServeConfig, create_app

    app = create_app(ServeConfig(task="text-to-image", model="tiny-sd", max_wait_ms=200), pipe=sd_pipe)
    server = serve(app)
    client = online_client(server.url + "/models/tiny-sd")
    kwargs = dict(negative_prompt="blurry", num_inference_steps=2, guidance_scale=6.0, width=64, height=48)
    got = client.text_to_image("a photo of sks dog", seed=7, **kwargs)
    want = sd_pipe("a photo of sks dog", generator=torch.Generator().manual_seed(7), **kwargs).images[0]
    assert got.size == (64, 48)
    np.testing.assert_array_equal(np.asarray(got), np.asarray(want))  # PNG is lossless: bit-identical

    # two concurrent requests with the same settings (batched together when they arrive together; whether they do
    # is timing-dependent, the batcher's grouping is tested deterministically in test_batching) equal their single runs
    import concurrent.futures

    prompts = [("a red rocket", 1), ("a cat on a sofa", 2)]
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        futures = [
            pool.submit(client.text_to_image, p, seed=s, num_inference_steps=2, width=32, height=32)
            for p, s in prompts
        ]
        images = [f.result() for f in futures]
    for (prompt, seed), image in zip(prompts, images):
        single = sd_pipe(
            prompt, generator=torch.Generator().manual_seed(seed), num_inference_steps=2, width=32, height=32
        ).images[0]
        diff = np.abs(np.asarray(image, dtype=int) - np.asarray(single, dtype=int))
        assert diff.max() <= 1  # the batched UNet call may round differently in the last bit

    # the raw wire format: PNG bytes with the seed used in a header
    response = httpx.post(
        server.url + "/",
        json={"inputs": "x", "parameters": {"num_inference_steps": 1, "width": 32, "height": 32}},
        timeout=60,
    )
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(response.content)).format == "PNG"
    seed = int(response.headers["x-seed"])
    again = httpx.post(
        server.url + "/",
        json={"inputs": "x", "parameters": {"num_inference_steps": 1, "width": 32, "height": 32, "seed": seed}},
        timeout=60,
    )
    assert again.content == response.content
    response = httpx.post(server.url + "/", json={"inputs": "x", "parameters": {"width": 30}}, timeout=60)
    assert response.status_code == 400 and "multiple of 8" in response.json()["error"]
