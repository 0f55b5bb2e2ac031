import json
import subprocess
import sys


def test_import_hfvision_is_light():
    code = (
        "import sys, json, hfvision; "
        "print(json.dumps(sorted(m for m in ('torch','transformers','diffusers','timm','cv2') if m in sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert json.loads(out) == []


def test_every_public_name_resolves():
    import hfvision

    missing = [name for name in hfvision.__all__ if getattr(hfvision, name, None) is None]
    assert missing == []
    assert hfvision.DreamBoothPipeline.__name__ == "DreamBoothPipeline"
    assert hfvision.pipeline.__module__ == "hfvision.pipelines.factory"
