"""`ImageClassificationTrainer`: a `transformers.Trainer` that builds its model, data and metrics from a config.

>>> config = ImageClassificationConfig(model_name_or_path="google/vit-base-patch16-224", data="photos/",
...                                    output_dir="out", task="gender-classification")
>>> trainer = ImageClassificationTrainer(config)
>>> trainer.train()
>>> trainer.save_pipeline()          # out/: model, processor, pipeline code, README.md, metrics.json, PNG
>>> trainer.push_to_hub()            # when config.push_to_hub (repo: config.hub_model_id)
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from transformers import Trainer, set_seed

from ...utils.io import atomic_write
from ...utils.logging import get_logger
from .config import ImageClassificationConfig
from .data import ClassificationData, load_classification_data
from .metrics import ClassificationMetrics, classification_report, save_report
from .model_card import CardInfo, render_model_card
from .modeling import add_lora, frozen_batch_norms, load_classifier
from .saving import (
    PUSH_IGNORE_PATTERNS,
    StagedDirectory,
    check_output_dir,
    pipeline_class_for_task,
    remove_checkpoints,
    resolve_resume_checkpoint,
    run_identity,
    write_model_files,
    write_run_file,
)
from .transforms import build_transforms, collate

logger = get_logger(__name__)

_OWN_ARGUMENTS = ("model", "train_dataset", "eval_dataset", "processing_class", "data_collator", "compute_metrics")


class ImageClassificationTrainer(Trainer):
    """Fine-tunes an image classifier (transformers or timm) described by an [`ImageClassificationConfig`].

    Construction runs the preparation steps in order: seed, data (load, check, split), model (labels mapped into
    ``id2label``/``label2id``, head kept or re-initialised), transforms from the model's preprocessing config,
    optional LoRA, metrics. Then it is a regular `Trainer`: ``train()`` (resuming from ``config.resume_from_checkpoint``
    when set), ``evaluate()``, callbacks, checkpoints.

    Args:
        args ([`ImageClassificationConfig`]): all options.
        data ([`ClassificationData`], *optional*): already loaded data (default: loaded from ``args.data``).
        trainer_kwargs: other `Trainer` arguments (``callbacks``, ``optimizers``, ...).

    Example:

    >>> trainer = ImageClassificationTrainer(ImageClassificationConfig(model_name_or_path="tiny-vit", data="faces/",
    ...                                                                output_dir="out", num_train_epochs=2))
    >>> trainer.train()
    >>> trainer.save_pipeline()
    """

    args: ImageClassificationConfig

    def __init__(self, args: ImageClassificationConfig, data: ClassificationData | None = None, **trainer_kwargs):
        clashing = [k for k in _OWN_ARGUMENTS if k in trainer_kwargs]
        if clashing:
            raise TypeError(
                f"ImageClassificationTrainer builds {', '.join(clashing)} from its config; use "
                "transformers.Trainer to pass your own"
            )
        if not isinstance(args, ImageClassificationConfig):
            raise TypeError(f"args must be an ImageClassificationConfig, got {type(args).__name__}")
        # 1. Check the task and the output directory first: fail before minutes of loading and training
        self.pipeline_class = pipeline_class_for_task(args.task)
        check_output_dir(args)  # another run's model or checkpoints there: refuse unless resuming / overwriting
        self.run_identity = run_identity(args)
        # 2. Seed (the head initialisation and the split depend on it)
        set_seed(args.seed)
        # 3. Data
        if data is None:
            data = load_classification_data(
                args.data,
                train_split=args.train_split,
                validation_split=args.validation_split,
                validation_size=args.validation_size,
                image_column=args.image_column,
                label_column=args.label_column,
                group_column=args.group_column,
                seed=args.data_seed if args.data_seed is not None else args.seed,
                bad_images=args.bad_images,
                max_train_samples=args.max_train_samples,
                max_eval_samples=args.max_eval_samples,
                revision=args.data_revision,
            )
        # 4. Model for these labels; keep its label order when its head already knows them
        loaded = load_classifier(
            args.model_name_or_path,
            data.labels,
            revision=args.model_revision,
            trust_remote_code=args.trust_remote_code,
        )
        if loaded.labels != data.labels:
            data = data.align_labels(loaded.model.config.label2id)
        # 5. Transforms from the model's own preprocessing config, applied lazily
        train_tf, eval_tf = build_transforms(
            loaded.model, loaded.processor, data.image_column, data.label_column, augment=args.augment
        )
        # 6. LoRA
        model = loaded.model
        self._frozen_norms: list = []
        if args.lora:
            model = add_lora(model, args.lora_r, args.lora_alpha, args.lora_dropout, args.lora_target_modules)
            self._frozen_norms = frozen_batch_norms(model)
        self.data, self.loaded, self.report = data, loaded, None
        self._eval_transform = eval_tf
        super().__init__(
            model=model,
            args=args,
            data_collator=collate,
            train_dataset=data.train.with_transform(train_tf),
            eval_dataset=data.validation.with_transform(eval_tf),
            processing_class=loaded.processor,
            compute_metrics=ClassificationMetrics(data.labels),
            **trainer_kwargs,
        )

    @property
    def labels(self) -> list[str]:
        return list(self.data.labels)

    def train(self, resume_from_checkpoint: str | bool | None = None, **kwargs):
        """`Trainer.train`; ``resume_from_checkpoint`` defaults to the config's (``"latest"``/``"true"`` = the last
        checkpoint *of this run* in ``output_dir``; an error if there is none, never a silent restart).

        A fresh run (no resume) with ``overwrite_output_dir`` first removes the replaced run's checkpoints.
        """
        if resume_from_checkpoint is None and self.args.resume_from_checkpoint:
            value = str(self.args.resume_from_checkpoint)
            resume_from_checkpoint = True if value.lower() in ("latest", "last", "true", "1", "yes") else value
        if resume_from_checkpoint:
            resume_from_checkpoint = resolve_resume_checkpoint(self.args, self.run_identity, resume_from_checkpoint)
            logger.info(
                "resuming from %s", "the last checkpoint" if resume_from_checkpoint is True else resume_from_checkpoint
            )
        elif self.args.overwrite_output_dir and self.is_world_process_zero():
            remove_checkpoints(self.args.output_dir)
        if self.args.should_save:  # the output directory records which run it belongs to
            Path(self.args.output_dir).mkdir(parents=True, exist_ok=True)
            write_run_file(self.args.output_dir, self.run_identity)
        return super().train(resume_from_checkpoint=resume_from_checkpoint, **kwargs)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if self._frozen_norms and model.training:
            for module in self._frozen_norms:  # LoRA: the base model's BatchNorm statistics stay as they are
                module.eval()
        return super().compute_loss(
            model, inputs, return_outputs=return_outputs, num_items_in_batch=num_items_in_batch
        )

    def _save(self, output_dir: str | None = None, state_dict=None) -> None:
        super()._save(output_dir, state_dict=state_dict)
        # Trainer pickles its arguments (training_args.bin, readable only with weights_only=False) and never
        # reads them back; keep them as JSON instead, so no checkpoint file needs an unsafe unpickle.
        # Only the writing process does this (every rank calls _save; the others share its output_dir).
        pickled = Path(output_dir if output_dir is not None else self.args.output_dir) / "training_args.bin"
        if self.args.should_save and pickled.is_file():
            with atomic_write(pickled.with_suffix(".json"), "w") as f:
                f.write(self.args.to_json_string())
            pickled.unlink(missing_ok=True)
            write_run_file(pickled.parent, self.run_identity)  # which run wrote this checkpoint

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model=None) -> None:
        # transformers 5 writes checkpoints in the original (4.x) weight-name layout (save_pretrained's
        # save_original_format=True) but Trainer reads them back with a non-strict load_state_dict: weights whose
        # names changed (e.g. ViT's attention, now q_proj/v_proj) are silently NOT restored and training "resumes"
        # from the base weights. Load through from_pretrained, which converts the names, and copy strictly.
        if not self._restore_pretrained_weights(resume_from_checkpoint, model):
            super()._load_from_checkpoint(resume_from_checkpoint, model)

    def _load_best_model(self) -> None:
        if not self._restore_pretrained_weights(self.state.best_model_checkpoint):
            super()._load_best_model()

    def _restore_pretrained_weights(self, checkpoint: str, model=None) -> bool:
        from transformers import PreTrainedModel
        from transformers.utils import SAFE_WEIGHTS_NAME

        target = self.accelerator.unwrap_model(model if model is not None else self.model)
        if not isinstance(target, PreTrainedModel) or not os.path.isfile(os.path.join(checkpoint, SAFE_WEIGHTS_NAME)):
            return False  # PEFT adapters, sharded or pickle checkpoints: Trainer's own loading
        restored = type(target).from_pretrained(checkpoint, config=target.config, dtype=target.dtype)
        target.load_state_dict(restored.state_dict(), strict=True)
        logger.info("restored all %d weight tensors from %s", len(restored.state_dict()), checkpoint)
        return True

    # -- after training -------------------------------------------------------------------------------------------
    def evaluate_report(self, out_dir: str | os.PathLike | None = None) -> dict[str, Any]:
        """Predict the validation split, build the full report (per class, confusion matrix, per group) and write
        ``metrics.json`` + ``confusion_matrix.png`` into ``out_dir`` (default ``output_dir``)."""
        output = self.predict(self.eval_dataset, metric_key_prefix="eval")
        logits = output.predictions[0] if isinstance(output.predictions, tuple) else output.predictions
        groups = self.data.validation[self.data.group_column] if self.data.group_column else None
        report = classification_report(logits.argmax(-1).tolist(), output.label_ids.tolist(), self.labels, groups)
        report["global_step"] = self.state.global_step
        self.report = report
        if not self.is_world_process_zero():  # predict() is collective; only the main process writes
            return report
        save_report(report, out_dir or self.args.output_dir)
        logger.info(
            "validation accuracy %.4f, macro F1 %.4f (%d images)",
            report["accuracy"],
            report["f1_macro"],
            report["num_samples"],
        )
        return report

    def final_model(self):
        """The trained model as a plain transformers model (LoRA merged into a copy when LoRA is on)."""
        model = self.accelerator.unwrap_model(self.model)
        if self.args.lora:
            return copy.deepcopy(model).merge_and_unload()
        return model

    def save_pipeline(self, output_dir: str | os.PathLike | None = None) -> Path:
        """Write the pipeline repo into ``output_dir`` (default ``args.output_dir``; checkpoints there are kept).

        Contents: model weights (safetensors; LoRA merged unless ``lora_save="adapter"``), image processor,
        ``custom_pipelines`` + pipeline code for custom tasks, ``adapter/`` (LoRA, ``lora_save="both"``), README.md,
        ``metrics.json`` and ``confusion_matrix.png``.
        """
        out = Path(output_dir or self.args.output_dir)
        if not self.is_world_process_zero():
            self.evaluate_report(out)  # predict() is collective: take part; the main process writes the files
            return out
        with StagedDirectory(out) as stage:
            # 1. Metrics (the card needs them)
            report = self.evaluate_report(stage)
            # 2. Model + processor (+ pipeline code)
            unwrapped = self.accelerator.unwrap_model(self.model)
            if self.args.lora and self.args.lora_save in ("adapter", "both"):
                unwrapped.save_pretrained(stage if self.args.lora_save == "adapter" else stage / "adapter")
            if self.args.lora and self.args.lora_save == "adapter":
                self.loaded.processor.save_pretrained(stage)
            else:
                write_model_files(self.final_model(), self.loaded.processor, stage, self.args.task)
            # 3. Model card
            (stage / "README.md").write_text(render_model_card(self._card_info(out, report)), encoding="utf-8")
        logger.info(
            "saved the %s pipeline (with metrics.json, confusion_matrix.png, README.md) to %s", self.args.task, out
        )
        return out

    def _card_info(self, out: Path, report: dict) -> CardInfo:
        repo_id = self.hub_model_id or self.args.hub_model_id
        return CardInfo(
            model_name=(repo_id or out.name).split("/")[-1],
            task=self.args.task,
            base_model=self.args.model_name_or_path,
            labels=self.labels,
            report=report,
            train_counts=self.data.class_counts("train"),
            validation_counts=self.data.class_counts("validation"),
            data_source=self.data.source,
            hub_dataset=self.data.hub_dataset,
            hyperparameters=self.args.hyperparameters(),
            lora=self.args.lora,
            lora_save=self.args.lora_save,
            head_reinitialised=self.loaded.head_reinitialised,
            skipped_images=len(self.data.skipped),
            repo_id=repo_id,
        )

    def push_to_hub(
        self,
        commit_message: str | None = "End of training",
        blocking: bool = True,
        token: str | None = None,
        revision: str | None = None,
        private: bool | None = None,
        **kwargs,
    ):
        """Save the pipeline repo (:meth:`save_pipeline`) and upload it to ``args.hub_model_id``.

        Unlike `Trainer.push_to_hub`, what is uploaded is the pipeline repo only: no checkpoints, optimizer state or
        pickled ``training_args.bin``; it carries an Inference Endpoints ``handler.py`` and ``requirements.txt``.
        """
        from huggingface_hub import HfApi

        token = token if token is not None else self.args.hub_token
        if self.hub_model_id is None:
            self.init_hf_repo(token=token, private=private)
        self.callback_handler.on_push_begin(self.args, self.state, self.control)
        out = self.save_pipeline()
        if not self.is_world_process_zero():
            return None
        from ...hub.endpoints import write_endpoint_files

        write_endpoint_files(out, "classifier")  # Inference Endpoints serve the repo as it is
        info = HfApi(token=token).upload_folder(
            repo_id=self.hub_model_id,
            folder_path=str(out),
            commit_message=commit_message,
            revision=revision if revision is not None else self.args.hub_revision,
            ignore_patterns=PUSH_IGNORE_PATTERNS,
            run_as_future=not blocking,
        )
        logger.info("pushed %s to %s", out, self.hub_model_id)
        return info


@dataclass
class TrainingResult:
    """What :func:`train_classifier` produced."""

    output_dir: Path
    report: dict[str, Any]
    global_step: int
    repo_id: str | None = None


def train_classifier(config: ImageClassificationConfig) -> TrainingResult:
    """Train, evaluate, save the pipeline repo and (when ``config.push_to_hub``) push it: the CLI's whole job.

    >>> result = train_classifier(ImageClassificationConfig(model_name_or_path="tiny-vit", data="faces/",
    ...                                                     output_dir="out", task="gender-classification"))
    >>> result.report["accuracy"]
    0.97
    """
    trainer = ImageClassificationTrainer(config)
    trainer.train()
    repo_id = None
    if config.push_to_hub:
        trainer.push_to_hub()
        repo_id = trainer.hub_model_id
    else:
        trainer.save_pipeline()
    return TrainingResult(Path(config.output_dir), trainer.report, trainer.state.global_step, repo_id)
