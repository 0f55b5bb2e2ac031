"""The other image tasks over HTTP: face-first gender classification and feature pyramids equal the pipelines."""

from __future__ import annotations

import base64

import numpy as np
import pytest

pytest.importorskip("fastapi", reason="the [serve] extra (fastapi) is not installed")
httpx = pytest.importorskip("httpx")


def _json_request(image_bytes: bytes, parameters: dict) -> dict:
    return {"inputs": base64.b64encode(image_bytes).decode(), "parameters": parameters}


def test_gender_classification_face_first(tiny_model_dir, photo_bytes, serve):
    import hfvision
    from hfvision.data import load_image
    from hfvision.serving import ServeConfig, create_app

    pipe = hfvision.pipeline("gender-classification", model=str(tiny_model_dir("vit")))
    server = serve(create_app(ServeConfig(task="gender-classification", model="g"), pipe=pipe))
    image = load_image(photo_bytes["astronaut-png"])
    want = pipe(image, faces=True, top_k=1)
    assert len(want) == 1 and set(want[0]) == {"box", "score_face", "labels"}  # the astronaut's one face
    response = httpx.post(
        server.url + "/", json=_json_request(photo_bytes["astronaut-png"], {"faces": True, "top_k": 1}), timeout=60
    )
    assert response.status_code == 200, response.text
    assert response.json() == want
    # no face (a cat): an empty list, not an error
    response = httpx.post(server.url + "/", json=_json_request(photo_bytes["chelsea"], {"faces": True}), timeout=60)
    assert response.status_code == 200 and response.json() == pipe(load_image(photo_bytes["chelsea"]), faces=True)


def test_whole_image_requests_use_the_split_path_and_face_requests_the_full_call(tiny_model_dir, photo_bytes, serve):
    import hfvision
    from hfvision.data import load_image
    from hfvision.serving import ServeConfig, create_app

    pipe = hfvision.pipeline("gender-classification", model=str(tiny_model_dir("vit")))
    calls = {"prepared": 0, "full": 0}
    run_prepared, full_call = pipe.run_prepared, type(pipe).__call__

    def counting_run_prepared(items, **kwargs):
        calls["prepared"] += len(items)
        return run_prepared(items, **kwargs)

    class Counting(type(pipe)):
        def __call__(self, *args, **kwargs):
            calls["full"] += 1
            return full_call(self, *args, **kwargs)

    pipe.run_prepared, pipe.__class__ = counting_run_prepared, Counting
    server = serve(create_app(ServeConfig(task="gender-classification", model="g"), pipe=pipe))
    whole = httpx.post(server.url + "/", content=photo_bytes["coffee"], timeout=60)
    faces = httpx.post(server.url + "/", json=_json_request(photo_bytes["astronaut-png"], {"faces": True}), timeout=60)
    assert calls == {"prepared": 1, "full": 1}
    image = load_image(photo_bytes["coffee"])
    assert whole.json() == full_call(pipe, image)
    assert faces.json() == full_call(pipe, load_image(photo_bytes["astronaut-png"]), faces=True)


def test_feature_pyramid(tiny_model_dir, photo_bytes, serve):
    import hfvision
    from hfvision.data import load_image
    from hfvision.serving import ServeConfig, create_app

    pipe = hfvision.pipeline("image-feature-pyramid", model=str(tiny_model_dir("timm-resnet")))
    server = serve(create_app(ServeConfig(task="image-feature-pyramid", model="fpn"), pipe=pipe))
    want = pipe(load_image(photo_bytes["coffee"]), out_indices=(3, 4))
    response = httpx.post(
        server.url + "/", json=_json_request(photo_bytes["coffee"], {"out_indices": [3, -1]}), timeout=60
    )
    assert response.status_code == 200, response.text
    got = response.json()
    assert [(g["index"], g["module"], g["channels"], g["stride"]) for g in got] == [
        (w["index"], w["module"], w["channels"], w["stride"]) for w in want
    ]
    for g, w in zip(got, want):  # float32 -> JSON -> float64 is exact
        np.testing.assert_array_equal(np.asarray(g["feature_map"], dtype=np.float32), w["feature_map"])
    response = httpx.post(
        server.url + "/", json=_json_request(photo_bytes["coffee"], {"out_indices": [9]}), timeout=60
    )
    assert response.status_code == 400 and "out of range" in response.json()["error"]


@pytest.mark.slow
def test_onnx_backend(tiny_model_dir, photo_bytes, serve, tmp_path):
    """``--onnx``: the ONNX Runtime pipeline behind the same routes gives the PyTorch pipeline's answers."""
    import hfvision
    from hfvision.data import load_image
    from hfvision.export import export_onnx
    from hfvision.serving import ServeConfig, create_app

    vit_dir = str(tiny_model_dir("vit"))
    export_onnx(vit_dir, tmp_path / "onnx", task="gender-classification")
    server = serve(create_app(ServeConfig(task="gender-classification", model=str(tmp_path / "onnx"), onnx=True)))
    assert type(server.server.config.app.state.runner.pipe.model).__name__ == "OrtModelForImageClassification"
    torch_pipe = hfvision.pipeline("gender-classification", model=vit_dir)
    for name in ("astronaut", "coffee"):
        response = httpx.post(server.url + "/models/onnx", content=photo_bytes[name], timeout=60)
        assert response.status_code == 200, response.text
        want = torch_pipe(load_image(photo_bytes[name]))
        assert [r["label"] for r in response.json()] == [w["label"] for w in want]
        np.testing.assert_allclose([r["score"] for r in response.json()], [w["score"] for w in want], atol=1e-5)
