"""Writing a run's output imports hfvision's DreamBooth pipeline of that run's family only: an SD or SDXL run does not
pay for diffusers' Flux / SD3 pipelines (and T5) it never uses."""

from __future__ import annotations

import json


def test_hub_model_index_imports_only_the_family_it_names(tmp_path, run_python):
    out = tmp_path / "out"
    out.mkdir()
    (out / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionXLPipeline", "vae": ["a", "b"]}))
    (out / "dreambooth_xl.py").write_text("# shipped pipeline code\n")
    printed = run_python(
        f"""
        import json, sys
        from pathlib import Path
        from hfvision.training.dreambooth.output import hub_model_index

        index = json.loads(hub_model_index(Path({str(out)!r})))
        loaded = [m for m in sys.modules if m.startswith(("hfvision.pipelines.dreambooth", "diffusers.pipelines."))]
        print(json.dumps({{"class": index["_class_name"], "loaded": loaded}}))
        """
    )
    result = json.loads(printed.strip().splitlines()[-1])
    assert result["class"] == ["dreambooth_xl", "DreamBoothXLPipeline"]
    assert "hfvision.pipelines.dreambooth_xl" in result["loaded"]
    for unused in (
        "hfvision.pipelines.dreambooth_flux",
        "hfvision.pipelines.dreambooth_sd3",
        "diffusers.pipelines.flux.pipeline_flux",
        "diffusers.pipelines.stable_diffusion_3.pipeline_stable_diffusion_3",
    ):
        assert unused not in result["loaded"]
