"""Bad input: clear one-line errors and no partial files."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from hfvision.conversion import detect_family, from_single_file, to_single_file


class NotAWeight:  # an object that only unpickles by running this module's code
    def __init__(self):
        self.step = 1


def _save(tmp_path, name, keys):
    path = tmp_path / name
    save_file({k: torch.zeros(1) for k in keys}, path)
    return path


@pytest.mark.parametrize(
    "keys, found",
    [
        (["model.diffusion_model.double_blocks.0.img_attn.norm.key_norm.scale"], "Flux"),
        (["model.diffusion_model.joint_blocks.0.context_block.adaLN_modulation.1.bias"], "Stable Diffusion 3"),
        (["conditioner.embedders.0.model.token_embedding.weight", "model.diffusion_model.out.0.weight"], "refiner"),
        (["lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight"], "LoRA"),
        (["down_blocks.0.resnets.0.conv1.weight", "conv_in.weight"], "diffusers-format component"),
        (["model.diffusion_model.input_blocks.0.0.weight"], "UNet without the text encoder"),
        (["encoder.weight"], "no Stable Diffusion keys"),
    ],
)
def test_unsupported_families_are_named(tmp_path, keys, found):
    path = _save(tmp_path, "model.safetensors", keys)
    with pytest.raises(ValueError, match=found) as err:
        detect_family(path)
    assert "supported single-file families: sd1" in str(err.value) and str(path) in str(err.value)
    with pytest.raises(ValueError, match=found):
        from_single_file(path)


def test_truncated_corrupt_and_missing_files(tmp_path, single_file):
    data = single_file("sd1").read_bytes()
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="truncated or corrupt"):
        detect_family(truncated)
    with pytest.raises(ValueError, match="truncated or corrupt"):
        from_single_file(truncated, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    garbage = tmp_path / "garbage.ckpt"
    garbage.write_bytes(b"not a checkpoint at all")
    with pytest.raises(ValueError, match="not a readable PyTorch checkpoint"):
        detect_family(garbage)
    truncated_ckpt = tmp_path / "truncated.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(1000)}}, truncated_ckpt)
    truncated_ckpt.write_bytes(truncated_ckpt.read_bytes()[:500])
    with pytest.raises(ValueError, match="truncated or corrupt"):
        detect_family(truncated_ckpt)
    with pytest.raises(FileNotFoundError):
        detect_family(tmp_path / "missing.safetensors")
    with pytest.raises(ValueError, match="unsupported file type"):
        detect_family(_save(tmp_path, "model.gguf.bin2", ["a"]))


def test_pickle_that_needs_code_is_refused(tmp_path):
    path = tmp_path / "model.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(1)}, "callbacks": NotAWeight()}, path)
    with pytest.raises(ValueError, match="pickle that needs code.*NotAWeight.*weights_only=True"):
        detect_family(path)
    with pytest.raises(ValueError, match="pickle that needs code"):
        from_single_file(path)


def test_to_single_file_refuses_bad_requests_without_leaving_files(tiny_model_dir, tmp_path):
    model_dir = tiny_model_dir("sd1")
    with pytest.raises(ValueError, match="does not match the file name"):
        to_single_file(model_dir, tmp_path / "model.safetensors", format="ckpt")
    with pytest.raises(ValueError, match="must be 'safetensors' or 'ckpt'"):
        to_single_file(model_dir, tmp_path / "model.safetensors", format="gguf")
    with pytest.raises(FileNotFoundError, match="model_index.json"):
        to_single_file(tmp_path, tmp_path / "model.safetensors")
    with pytest.raises(ValueError, match="family='flux'"):
        to_single_file(model_dir, tmp_path / "model.safetensors", family="flux")
    existing = tmp_path / "existing.safetensors"
    existing.write_bytes(b"keep me")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        to_single_file(model_dir, existing)
    assert existing.read_bytes() == b"keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["existing.safetensors"]


def test_base_of_another_family_is_refused(single_file):
    with pytest.raises(ValueError, match="is an sd1 checkpoint but base='sdxl'.*'sd15'"):
        from_single_file(single_file("sd1"), base="sdxl")
    with pytest.raises(ValueError, match="base='sd3'"):
        from_single_file(single_file("sd1"), base="sd3")
    with pytest.raises(ValueError, match="prediction_type='x0'"):
        from_single_file(single_file("sd1"), prediction_type="x0")


@pytest.mark.slow
def test_non_standard_tokenizer_needs_its_config(tiny_model_dir, tmp_path):
    """A tokenizer with an added token (textual inversion) cannot be rebuilt from CLIP's vocabulary."""
    import shutil

    from transformers import CLIPTokenizer

    model_dir = shutil.copytree(tiny_model_dir("sd1"), tmp_path / "with-token")
    tokenizer = CLIPTokenizer.from_pretrained(model_dir / "tokenizer")
    tokenizer.add_tokens(["<my-concept>"])
    tokenizer.save_pretrained(model_dir / "tokenizer")
    path = to_single_file(model_dir, tmp_path / "model.safetensors")
    with pytest.raises(ValueError, match="not CLIP's standard vocabulary.*config="):
        from_single_file(path)
    pipe = from_single_file(path, config=model_dir)
    assert pipe.tokenizer.convert_tokens_to_ids("<my-concept>") == 49408
