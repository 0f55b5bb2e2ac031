"""Tiny offline components, the CLIP tokenizer, and a push/pull round trip through the local Hub server."""

from __future__ import annotations

import time

ORDER = 0
TITLE = "Tiny offline models, tokenizer and local Hub round trip"


def run(ctx) -> None:
    import torch

    from ... import testing as t
    from ..runner import DemoContext

    assert isinstance(ctx, DemoContext)
    sec = ctx.section
    tok = t.clip_tokenizer()
    sec.text(f"CLIP tokenizer rebuilt offline: 'a photo of' -> {tok('a photo of').input_ids}")
    rows = []
    builders = {
        "vit (gender)": lambda d: t.save_tiny_vit_classifier(d),
        "timm resnet": lambda d: t.save_tiny_timm_resnet(d),
        "sd1": lambda d: t.save_tiny_sd(d, "sd1"),
        "sd2 (v-prediction)": lambda d: t.save_tiny_sd(d, "sd2"),
        "sdxl": lambda d: t.save_tiny_sd(d, "sdxl"),
    }
    for name, build in builders.items():
        start = time.perf_counter()
        d = ctx.model_dir(name, build)
        size = sum(f.stat().st_size for f in d.rglob("*") if f.is_file())
        rows.append(
            {
                "model": name,
                "saved to": str(d),
                "MB on disk": round(size / 1e6, 2),
                "build+save s": round(time.perf_counter() - start, 2),
            }
        )
    sec.table(rows, "Tiny components (random weights)")

    if ctx.hub_endpoint:
        from transformers import AutoModelForImageClassification

        model = AutoModelForImageClassification.from_pretrained(ctx.cache["vit (gender)"])
        start = time.perf_counter()
        model.push_to_hub("demo/tiny-vit")
        back = AutoModelForImageClassification.from_pretrained("demo/tiny-vit", force_download=True)
        same = all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), back.state_dict().values()))
        sec.text(
            f"Pushed the tiny ViT to the local Hub at {ctx.hub_endpoint} and pulled it back: "
            f"weights identical = {same} ({time.perf_counter() - start:.2f} s)"
        )
        if not same:
            raise RuntimeError("local Hub round trip changed the weights")
