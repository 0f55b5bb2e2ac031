#!/usr/bin/env python
"""Fine-tune an image classifier (transformers or timm) and publish it as a pipeline repo.

Every option is a field of `hfvision.training.ImageClassificationConfig` (all of `transformers.TrainingArguments`
plus model / data / label / LoRA options), parsed with transformers' `HfArgumentParser`; a single `.yaml` argument
reads them from a file instead. Same as `hfvision train classifier ...`.

    python examples/train_classifier.py --model_name_or_path rizvandwiki/gender-classification \
        --data faces/ --output_dir gender-ft --task gender-classification --num_train_epochs 3 \
        --learning_rate 5e-5 --push_to_hub --hub_model_id me/gender-ft
    python examples/train_classifier.py --model_name_or_path timm/resnet18.a1_in1k --data my_dataset_on_hub \
        --output_dir resnet-ft --lora --learning_rate 5e-4
    python examples/train_classifier.py run.yaml

`--data` is an imagefolder (one subfolder per class), a `save_to_disk` folder or a Hub dataset id.
"""

from __future__ import annotations

import logging
import sys

from transformers import HfArgumentParser

from hfvision.training import ImageClassificationConfig
from hfvision.training.classification import train_classifier


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = HfArgumentParser(ImageClassificationConfig)
    if len(argv) == 1 and argv[0].endswith((".yaml", ".yml")):
        (config,) = parser.parse_yaml_file(argv[0])
    else:
        (config,) = parser.parse_args_into_dataclasses(argv)
    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s", level=logging.INFO)
    result = train_classifier(config)  # train, evaluate, save the pipeline repo, push when --push_to_hub
    print(
        f"validation accuracy {result.report['accuracy']:.4f}, macro F1 {result.report['f1_macro']:.4f}; "
        f"pipeline repo in {result.output_dir}" + (f", pushed to {result.repo_id}" if result.repo_id else "")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
