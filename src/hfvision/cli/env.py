"""``hfvision env``: versions of the stack, torch devices and which optional extras import."""

from __future__ import annotations

import argparse
import importlib.metadata as md
import json
import platform

STACK = [
    "hfvision",
    "torch",
    "torchvision",
    "transformers",
    "diffusers",
    "accelerate",
    "peft",
    "datasets",
    "evaluate",
    "safetensors",
    "optimum",
    "onnx",
    "onnxruntime",
    "timm",
    "tokenizers",
    "huggingface_hub",
    "pillow",
    "opencv-python-headless",
    "numpy",
    "open-clip-torch",
    "scikit-image",
]
EXTRAS = {
    "serve": ["fastapi", "uvicorn"],
    "ui": ["gradio"],
    "testing": ["sklearn"],
    "train": ["tensorboard"],
    "optional": ["bitsandbytes", "onnxscript", "playwright"],
}


def collect() -> dict:
    """Gather the environment report as a JSON-able dict (torch is imported for device info)."""
    from ..utils.import_utils import is_available

    versions = {}
    for dist in STACK:
        try:
            versions[dist] = md.version(dist)
        except md.PackageNotFoundError:
            versions[dist] = None
    import torch

    devices = {
        "cuda": torch.cuda.is_available(),
        "cuda_devices": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())],
        "mps": bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()),
        "cpu_threads": torch.get_num_threads(),
    }
    extras = {name: {m: is_available(m) for m in mods} for name, mods in EXTRAS.items()}
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": versions,
        "devices": devices,
        "extras": extras,
    }


def run(args: argparse.Namespace) -> int:
    report = collect()
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"Python {report['python']} on {report['platform']}")
    for name, version in report["versions"].items():
        print(f"  {name:<24} {version or 'not installed'}")
    d = report["devices"]
    cuda = ", ".join(d["cuda_devices"]) if d["cuda"] else "no"
    print(f"Devices: CUDA {cuda}; MPS {'yes' if d['mps'] else 'no'}; CPU threads {d['cpu_threads']}")
    for extra, mods in report["extras"].items():
        flags = ", ".join(f"{m} {'yes' if ok else 'no'}" for m, ok in mods.items())
        print(f"  [{extra}] {flags}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("env", help="print the versions of the stack, devices and optional extras")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run)
