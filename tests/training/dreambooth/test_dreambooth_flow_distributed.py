"""Two CPU processes (gloo, through `accelerate launch --multi_gpu`) on a Flux-dev LoRA run with ``--train_text_encoder``:
every process sees other photos, so only gradients averaged across processes keep the replicas equal. Each process
writes its own adapters at the end; the CLIP LoRA must be bit-identical between them, like the transformer's."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
import torch

_SCRIPT = textwrap.dedent(
    """
    import json, sys
    from hfvision.training import DreamBoothConfig, DreamBoothTrainer

    kwargs, out = json.loads(sys.argv[1]), sys.argv[2]

    class DumpAdapters:
        def on_train_end(self, trainer, result):
            from peft.utils import get_peft_model_state_dict
            from safetensors.torch import save_file

            acc = trainer.accelerator
            tensors = {}
            for i, encoder in enumerate(trainer.trained_text_encoders()):
                tensors.update({f"te{i}.{k}": v for k, v in get_peft_model_state_dict(encoder).items()})
            transformer = acc.unwrap_model(trainer.prepared_denoiser)
            tensors.update({f"transformer.{k}": v for k, v in get_peft_model_state_dict(transformer).items()})
            save_file({k: v.detach().contiguous() for k, v in tensors.items()}, f"{out}/rank{acc.process_index}.st")

    DreamBoothTrainer(DreamBoothConfig(**kwargs), callbacks=[DumpAdapters()]).train()
    """
)


@pytest.mark.slow  # two fresh processes importing diffusers: ~1 min on the shared machine
def test_flux_text_encoder_lora_stays_identical_across_processes(flow_kwargs, tmp_path, launch_two_processes):
    from safetensors.torch import load_file

    kwargs = flow_kwargs(prior=False, use_lora=True, rank=4, train_text_encoder=True, learning_rate=1e-2)
    script = tmp_path / "run.py"
    script.write_text(_SCRIPT)
    launch_two_processes([json.dumps(kwargs), str(tmp_path)], tmp_path, script=script)
    first, second = load_file(tmp_path / "rank0.st"), load_file(tmp_path / "rank1.st")
    assert first.keys() == second.keys()
    clip = [k for k in first if k.startswith("te0.")]
    transformer = [k for k in first if k.startswith("transformer.")]
    assert clip and transformer and not any(k.startswith("te1.") for k in first)  # T5 stays frozen
    # trained: the CLIP LoRA's up weights left their zero init (gaussian init: B starts at zero)
    assert any(first[k].abs().max() > 0 for k in clip if "lora_B" in k)
    differ = [k for k in clip + transformer if not torch.equal(first[k], second[k])]
    assert not differ, f"{len(differ)} adapter tensors differ between the processes, e.g. {differ[:3]}"
    assert Path(kwargs["output_dir"], "pytorch_lora_weights.safetensors").is_file()
