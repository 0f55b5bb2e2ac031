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
