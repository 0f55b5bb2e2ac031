"""The web UI in a real (headless) Chromium: generate an image, classify a photo; screenshots are saved."""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.browser


def test_generate_and_classify_in_the_browser(browser, ui_app, tmp_path, request, reference_images):
    from PIL import Image

    from hfvision.data import load_image
    from hfvision.testing import sample_image

    demo, config = ui_app
    shots = Path(os.environ.get("HFVISION_SCREENSHOTS") or tmp_path / "screenshots")  # keep them: set the variable
    shots.mkdir(parents=True, exist_ok=True)
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    page.set_default_timeout(90_000)
    page.goto(demo.local_url)

    # Generate tab: prompt with the subject helper, fixed seed, click Generate, an image appears in the gallery
    page.get_by_label("Subject token").fill("sks")
    page.get_by_label("Class").fill("dog")
    page.get_by_role("button", name="Insert subject").click()
    prompt = page.locator("#hfv-prompt textarea")
    page.wait_for_function("document.querySelector('#hfv-prompt textarea').value.includes('sks dog')")
    assert prompt.input_value() == "a photo of sks dog"
    prompt.fill("a photo of {token} {class} on the beach")
    seed = page.get_by_label("Seed (-1 = random)")
    seed.fill("3")
    seed.press("Tab")
    page.locator("#hfv-generate").click()
    page.locator("#hfv-gallery img").first.wait_for(state="visible")
    page.get_by_text(re.compile(r"1 image\(s\), seed 3")).wait_for()
    page.screenshot(path=str(shots / "generate.png"), full_page=True)

    # the saved PNG is exactly what the pipeline makes with these settings
    backend = demo.hfvision_backends[0]
    saved = np.asarray(Image.open(f"{config.output_dir}/hfvision-3-0.png"))
    pipe = backend.pipeline(config.model)
    (want,) = reference_images(pipe, "a photo of sks dog on the beach", 3, guidance_scale=7.5)
    np.testing.assert_array_equal(saved, np.asarray(want))

    # Classify tab: upload the astronaut, face-first; the face's label appears and matches the pipeline
    photo = tmp_path / "astronaut.png"
    sample_image("astronaut").resize((256, 256)).save(photo)
    page.get_by_role("tab", name="Classify").click()
    page.locator("#hfv-photo input[type=file]").set_input_files(str(photo))
    page.locator("#hfv-photo img").first.wait_for(state="visible")
    page.locator("#hfv-classify").click()
    page.locator("#hfv-annotated img").first.wait_for(state="visible")
    labels = page.locator("#hfv-labels")
    clf = demo.hfvision_backends[1].pipeline()
    faces = clf(load_image(photo), faces=True, top_k=2)
    assert len(faces) == 1
    top = faces[0]["labels"][0]["label"]
    labels.get_by_text(top).first.wait_for()
    page.screenshot(path=str(shots / "classify.png"), full_page=True)
    request.node.user_properties.append(("screenshots", str(shots)))
    print(f"screenshots in {shots}")
