"""Hub round trips through the local Hub server: custom_pipelines push/pull without hfvision, and verify=True."""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.hub

# Makes `import hfvision` fail, as on a machine where it is not installed.
BLOCK_HFVISION = """
import importlib.abc, sys

class _NoHfvision(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] == "hfvision":
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)

sys.meta_path.insert(0, _NoHfvision())
"""


def test_push_then_load_with_trust_remote_code_and_no_hfvision(local_hub, run_python, vit_dir, gender_pipe, tmp_path):
    """Process 1 (hfvision): register via the import hook, push, load with verify=True, refuse a corrupted cache.
    Process 2 (hfvision not importable): `pipeline(model=repo, trust_remote_code=True)` runs the pushed code."""
    from hfvision.testing import sample_image

    sample_image("astronaut").save(tmp_path / "astronaut.png")
    expected = gender_pipe(str(tmp_path / "astronaut.png"))
    pushed = run_python(
        f"""
        import json, os, sys
        import hfvision
        assert "transformers" not in sys.modules and "torch" not in sys.modules  # import hfvision stays light...
        from transformers import pipeline
        from hfvision.pipelines.loading import ChecksumMismatchError

        # ...and its import hook registered the task when transformers.pipelines was imported
        pipe = pipeline("gender-classification", model={str(vit_dir)!r}, device="cpu")
        assert type(pipe).__module__ == "hfvision.pipelines.classification", type(pipe)
        pipe.push_to_hub("user/tiny-gender")
        verified = hfvision.pipeline("gender-classification", model="user/tiny-gender", verify=True)
        print(json.dumps(verified({str(tmp_path / "astronaut.png")!r})))
        # flip one bit of the cached weights: verify=True must refuse to load them
        weights = os.path.realpath(os.path.join(verified.model.name_or_path, "model.safetensors"))
        with open(weights, "r+b") as f:
            f.seek(200)
            byte = f.read(1)[0]
            f.seek(200)
            f.write(bytes([byte ^ 1]))
        try:
            hfvision.pipeline("gender-classification", model="user/tiny-gender", verify=True)
        except ChecksumMismatchError as err:
            print("refused:", err)
        # transformers' factory honours verify too (model_kwargs), and does not fall back to an unverified load
        from hfvision.pipelines.loading import LoadRefusedError
        try:
            pipeline("gender-classification", model="user/tiny-gender", model_kwargs={{"verify": True}})
        except LoadRefusedError as err:
            print("stock refused:", type(err.__cause__).__name__, err)
    """,
        hub=local_hub,
    )
    lines = pushed.strip().splitlines()
    assert json.loads(lines[0]) == expected
    assert lines[1].startswith("refused: user/tiny-gender@") and "model.safetensors (sha256 expected" in lines[1]
    assert lines[2].startswith("stock refused: ChecksumMismatchError user/tiny-gender@")

    loaded = run_python(
        BLOCK_HFVISION
        + f"""
import json, sys
from transformers import pipeline

pipe = pipeline(model="user/tiny-gender", trust_remote_code=True, device="cpu")
assert not any(m.split(".")[0] == "hfvision" for m in sys.modules)
print(type(pipe).__name__, type(pipe).__module__.split(".")[0])
print(json.dumps(pipe({str(tmp_path / "astronaut.png")!r})))
""",
        hub=local_hub,
        env={"HF_HOME": str(tmp_path / "fresh_hf_home")},
    )
    name_line, result_line = loaded.strip().splitlines()[-2:]
    assert name_line == "GenderClassificationPipeline transformers_modules"
    assert json.loads(result_line) == expected
