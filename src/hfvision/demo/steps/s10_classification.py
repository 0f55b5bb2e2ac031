"""Classification: face-first gender classification, timm top-5 with ImageNet names, feature pyramid, batch files."""

from __future__ import annotations

import time

ORDER = 10
TITLE = "Image classification: face-first gender, timm with ImageNet names, feature pyramid, batch files"


def _draw_faces(image, faces, path) -> None:
    from PIL import ImageDraw

    image = image.copy()
    draw = ImageDraw.Draw(image)
    for face in faces:
        b = face["box"]
        top = face["labels"][0]
        draw.rectangle((b["xmin"], b["ymin"], b["xmax"], b["ymax"]), outline=(255, 40, 40), width=4)
        caption = f"{top['label']} {top['score']:.2f}"
        anchor = (b["xmin"], max(0, b["ymin"] - 16))
        draw.rectangle(draw.textbbox(anchor, caption, font_size=14), fill=(255, 40, 40))
        draw.text(anchor, caption, fill=(255, 255, 255), font_size=14)
    image.save(path)


def run(ctx) -> None:
    from timm.data import ImageNetInfo
    from transformers import pipeline as hf_pipeline

    import hfvision
    from hfvision import testing as t

    sec = ctx.section
    photo = t.sample_image("astronaut")

    # 1. face-first gender classification
    vit_dir = ctx.model_dir("vit (gender)", lambda d: t.save_tiny_vit_classifier(d))
    clf = hfvision.pipeline("gender-classification", model=vit_dir)
    start = time.perf_counter()
    faces = clf(photo, faces=True)
    seconds = time.perf_counter() - start
    box_png = ctx.path("classification/astronaut_faces.png")
    _draw_faces(photo, faces, box_png)
    sec.image(box_png, f"clf(image, faces=True): {len(faces)} face(s) found by the Haar detector ({seconds:.2f} s)")
    sec.table(
        [{"box": f["box"], "score_face": f["score_face"], "labels": f["labels"]} for f in faces],
        "Face-first output (tiny random ViT: labels are meaningless)",
    )
    stock = hf_pipeline("image-classification", model=str(vit_dir), device="cpu", dtype="float32")
    same = clf(photo) == stock(photo)
    sec.text(
        f"Whole image: {clf(photo)}; identical to transformers' stock image-classification pipeline: {same}. "
        f"chelsea (a cat) with faces=True -> {clf(t.sample_image('chelsea'), faces=True)}"
    )
    if not same or len(faces) != 1:
        raise RuntimeError("face-first demo: expected one face and parity with the stock pipeline")

    # 2. timm classification: ImageNet names instead of WordNet ids, and the model's test size
    synsets = ImageNetInfo().label_names()
    resnet_dir = ctx.model_dir(
        "timm resnet (1000 classes)", lambda d: t.save_tiny_timm_resnet(d, num_classes=1000, label_names=synsets)
    )
    cat = t.sample_image("chelsea")
    stock_top = hf_pipeline("image-classification", model=str(resnet_dir), device="cpu", dtype="float32")(cat)
    ours = hfvision.pipeline("image-classification", model=resnet_dir, use_test_size=True)
    ours_top = hfvision.pipeline("image-classification", model=resnet_dir)(cat)
    sec.table(
        [
            {
                "rank": i + 1,
                "stock transformers label": s["label"],
                "hfvision label": o["label"],
                "score": round(o["score"], 5),
            }
            for i, (s, o) in enumerate(zip(stock_top, ours_top))
        ],
        "timm resnet (random weights) top-5 on chelsea: same scores, readable ImageNet names",
    )
    cfg = ours.image_processor.data_config
    sec.text(
        f"use_test_size=True preprocesses at {cfg['input_size'][1:]} with crop_pct {cfg['crop_pct']} "
        f"(train size 224 / 0.95); top-1 there: {ours(cat, top_k=1)[0]['label']}"
    )

    # 3. feature pyramid
    fpn = hfvision.pipeline("image-feature-pyramid", model=resnet_dir)
    levels = fpn(cat)
    sec.table(
        [
            {
                "index": lvl["index"],
                "module": lvl["module"],
                "channels": lvl["channels"],
                "stride": lvl["stride"],
                "shape": tuple(lvl["feature_map"].shape),
            }
            for lvl in levels
        ],
        "image-feature-pyramid (default out_indices: every level from stride 4)",
    )

    # 4. batch classification of files, with a bad one in the folder
    folder = ctx.work_dir / "classify-input"
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("astronaut", "chelsea", "coffee"):
        t.sample_image(name).save(folder / f"{name}.jpg")
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    out = ctx.path("classification/preds.jsonl")
    records = hfvision.classify_files(folder, pipe=clf, output=out, batch_size=4, top_k=1, progress=False)
    sec.table(records, f"classify_files(folder) -> {out.name} (the broken file is reported, the run continues)")
