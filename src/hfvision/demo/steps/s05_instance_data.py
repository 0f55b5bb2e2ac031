"""DreamBooth instance data: smart crop of bundled photos (before/after with the face box), the preparation report,
and a session mirrored to the local Hub and restored elsewhere."""

from __future__ import annotations

import shutil
import time

ORDER = 5
TITLE = "DreamBooth instance data: smart crop, captions, report, Hub-backed session"

PHOTOS = ("chelsea", "rocket")


def _annotated(source, entry, max_side: int = 320):
    """The upright source with the detected faces (red) and the chosen square (green)."""
    from PIL import ImageDraw

    from ...data import load_image

    image = load_image(source)
    draw = ImageDraw.Draw(image)
    width = max(2, max(image.size) // 150)
    for face in entry.faces:
        draw.rectangle([face["xmin"], face["ymin"], face["xmax"] - 1, face["ymax"] - 1], outline="red", width=width)
    x0, y0, x1, y1 = entry.crop_box
    draw.rectangle([x0, y0, x1 - 1, y1 - 1], outline=(0, 255, 0), width=width)
    image.thumbnail((max_side, max_side))
    return image


def run(ctx) -> None:
    from PIL import Image

    from ...data import Session, prepare_instance_images
    from ...testing import sample_image

    sec = ctx.section
    raw = ctx.work_dir / "s05" / "raw"
    shutil.rmtree(raw.parent, ignore_errors=True)
    raw.mkdir(parents=True)
    for name in PHOTOS:
        sample_image(name).save(raw / f"{name}.jpg", quality=92)
    # a wide shot where a centre crop would cut the person off: the astronaut next to a landscape
    pagoda = sample_image("china")
    pagoda = pagoda.resize((round(pagoda.width * 512 / pagoda.height), 512))
    wide = Image.new("RGB", (512 + pagoda.width, 512))
    wide.paste(sample_image("astronaut"), (0, 0))
    wide.paste(pagoda, (512, 0))
    wide.save(raw / "astronaut wide.jpg", quality=92)
    # a photo stored sideways with an EXIF orientation tag, a caption sidecar, a duplicate and two bad files
    exif = Image.Exif()
    exif[0x0112] = 8  # display rotated 90 degrees counter-clockwise
    sample_image("coffee").rotate(-90, expand=True).save(raw / "sks mug (2).jpg", quality=92, exif=exif.tobytes())
    (raw / "rocket.txt").write_text("a photo of a rocket on the launch pad")
    shutil.copy(raw / "chelsea.jpg", raw / "chelsea_2.jpg")
    (raw / "notes.jpg").write_text("not a photo")
    (raw / "cut.png").write_bytes((ctx.work_dir / "s05" / "raw" / "chelsea.jpg").read_bytes()[:500])

    def prepare():
        return prepare_instance_images(
            raw,
            ctx.work_dir / "s05" / "prepared",
            size=256,
            crop="smart",
            instance_prompt="a photo of sks",
            caption_from_filename=True,
        )

    start = time.perf_counter()
    report = prepare()
    seconds = time.perf_counter() - start
    sec.text(
        f"prepare_instance_images on {len(report.entries)} files in {seconds:.2f} s: {report.summary()}. "
        "Source files are only read; faces come from OpenCV's Haar cascades (red boxes), the green square "
        "is the crop (faces > saliency > centre)."
    )
    sec.table(
        [
            {
                "file": e.source,
                "status": e.status,
                "size": "x".join(map(str, e.original_size or ())),
                "crop": e.crop_method or "",
                "faces": len(e.faces),
                "caption": f"{e.caption} ({e.caption_source})" if e.caption else "",
                "reason": ": ".join(p for p in (e.reason, e.detail) if p) or e.note,
            }
            for e in report.entries
        ],
        "PrepareReport",
    )
    for e in report.accepted:
        stem = e.source.rsplit(".", 1)[0].replace(" ", "_")
        before = ctx.path(f"s05/before_{stem}.png")
        _annotated(raw / e.source, e).save(before)
        after = ctx.path(f"s05/after_{stem}.png")
        shutil.copy(e.output, after)
        sec.image(before, f"{e.source}: {e.crop_method}" + (f", {len(e.faces)} face(s)" if e.faces else ""))
        sec.image(after, f"prepared {Image.open(after).size[0]} px" + (" (upscaled)" if e.upscaled else ""))
    again = prepare()
    sec.text(f"Second run (idempotence by content hash): {again.summary()}")

    if not ctx.hub_endpoint:
        sec.text("No local Hub server: the Hub-backed session part is skipped.")
        return
    from ...hub import HubSessionMirror

    session = Session.create(
        "demo-subject",
        root=ctx.work_dir / "s05" / "sessions",
        exist_ok=True,
        instance_prompt="a photo of sks",
        base_model="tiny-sd1",
    )
    for name in ("astronaut wide.jpg", "rocket.jpg", "rocket.txt"):
        shutil.copy(raw / name, session.raw_dir / name)
    session.prepare(256)
    ckpt = session.checkpoints_dir / "checkpoint-100"
    ckpt.mkdir(exist_ok=True)
    (ckpt / "model.safetensors").write_bytes(bytes(range(256)) * 64)
    start = time.perf_counter()
    with HubSessionMirror("demo/dreambooth-session", session) as mirror:
        mirror.restore()
        mirror.upload_session_files()
        mirror.upload_checkpoint(ckpt)
    restored = HubSessionMirror("demo/dreambooth-session", ctx.work_dir / "s05" / "fresh-machine" / "demo-subject")
    fresh = restored.restore()
    same = all(
        (fresh.path / p.relative_to(session.path)).read_bytes() == p.read_bytes()
        for p in session.path.rglob("*")
        if p.is_file()
    )
    sec.text(
        f"Session mirrored to the private Hub repo demo/dreambooth-session ({len(mirror.commits)} commits: "
        f"{', '.join(label for label, _ in mirror.commits)}) and restored into an empty folder in "
        f"{time.perf_counter() - start:.2f} s: every file byte-identical = {same}; latest checkpoint after "
        f"restore = {fresh.latest_checkpoint().name if fresh.latest_checkpoint() else None}."
    )
    if not same:
        raise RuntimeError("the restored session differs from the original")
