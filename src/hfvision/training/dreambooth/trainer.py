"""`DreamBoothTrainer`: the training run as a readable sequence of named steps, on Accelerate.

Accelerate owns devices, precision, distribution and checkpoint state; PEFT owns LoRA; diffusers provides the
models, noise schedule, LR schedules and min-SNR. This class decides the order of things and keeps every random
draw on explicit, checkpointed generators so that a killed and resumed run ends bit-identical to an uninterrupted
one (on CPU).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ...utils.logging import get_logger
from . import output as output_lib
from .config import RUN_IDENTITY_FIELDS
from .data import concept_summary
from .loss import draw_noise, dreambooth_loss, flow_matching_prediction, prediction_target, sample_latents, snr_weights
from .runtime import TrainingDivergedError
from .sdxl import add_time_ids
from .trainer_setup import TrainerSetup
from .validation import (
    best_weights_folder,
    finish_quality,
    log_to_trackers,
    render_validation,
    save_best_weights,
    save_samples,
    score_validation,
)

logger = get_logger(__name__)


@dataclass
class DreamBoothResult:
    """What a finished run produced."""

    output_dir: Path
    global_step: int
    final_loss: float | None
    checkpoints: list[Path] = field(default_factory=list)
    samples: list[Path] = field(default_factory=list)
    lora_weights: Path | None = None


class DreamBoothTrainer(TrainerSetup):
    """Fine-tune a text-to-image model on a few photos of one subject (full or LoRA; SD 1.x/2.x/XL, Flux.1, SD3).

    Args:
        config ([`DreamBoothConfig`]): every option of the run.
        callbacks (`list`, *optional*): objects with any of ``on_step_end(trainer, step, logs)``,
            ``on_checkpoint(trainer, path)``, ``on_validation(trainer, step, paths)``, ``on_train_end(trainer,
            result)``.

    Example:

    ```py
    >>> from hfvision.training import DreamBoothConfig, DreamBoothTrainer
    >>> config = DreamBoothConfig(pretrained_model_name_or_path="sd15", instance_data_dir="photos/",
    ...                           instance_prompt="a photo of sks dog", max_train_steps=400)
    >>> result = DreamBoothTrainer(config).train()
    >>> result.output_dir
    PosixPath('dreambooth-model')
    ```

    Every attribute of a run is declared in [`TrainerSetup.__init__`] (the base class, which also holds setup steps
    1-7); this class adds the loop (8), validation and the output (9).
    """

    # ------------------------------------------------------------------------------------------------ the run
    def train(self) -> DreamBoothResult:
        """Run every step below; returns a [`DreamBoothResult`]."""
        try:
            self.setup()
            # 8. Train
            self.training_loop()
            # 9. Save the pipeline / LoRA, config, model card; push if asked
            return self.finish()
        except BaseException as err:
            if self.session_started:  # main process: record it, flush Hub uploads
                self.session.on_failure(err)
            raise

    # ------------------------------------------------------------------------------------------------ 8. loop
    def training_loop(self) -> None:
        """Optimizer steps until ``max_train_steps``, from the resumed position of the epoch-seeded sampler.

        Every random draw of a step (latent sample, noise, noise offset, timesteps) comes from
        ``self.noise_generator``, saved in each checkpoint; with accelerate's state this makes a resumed run
        bit-identical to an uninterrupted one.
        """
        from accelerate import skip_first_batches
        from tqdm.auto import tqdm

        config, acc = self.config, self.accelerator
        epoch, step_in_epoch = divmod(self.global_step, self.steps_per_epoch)
        self.progress = tqdm(
            total=config.max_train_steps, initial=self.global_step, desc="steps", disable=not acc.is_local_main_process
        )
        self.accumulated_losses, self.accumulated_nonfinite = [], False
        while self.global_step < config.max_train_steps:
            self.sampler.set_epoch(epoch)
            self.train_dataloader.set_epoch(epoch)
            skip = step_in_epoch * config.gradient_accumulation_steps
            batches = skip_first_batches(self.train_dataloader, skip) if skip else self.train_dataloader
            for batch in batches:
                self.train_micro_batch(batch)
                if acc.sync_gradients:
                    self.global_step += 1
                    self.on_step_end(epoch)
                    if self.global_step >= config.max_train_steps:
                        break
            epoch, step_in_epoch = epoch + 1, 0
        self.progress.close()

    def train_micro_batch(self, batch: dict) -> None:
        acc = self.accelerator
        models = [self.prepared_denoiser, *(self.prepared_text_encoders if self.text_encoder_active else [])]
        with acc.accumulate(*models):
            loss = self.compute_loss(batch)
            gathered = acc.gather(loss.detach().float().reshape(1))
            if torch.isfinite(gathered).all():  # every process takes the same branch
                acc.backward(loss)
                self.accumulated_losses.append(gathered.mean().item())
            else:
                self.accumulated_nonfinite = True
            if acc.sync_gradients:
                self.optimizer_step()

    def compute_loss(self, batch: dict) -> torch.Tensor:
        """Forward pass: latents, noise, UNet (or Flux/SD3 transformer) prediction, DreamBooth loss (with prior
        preservation)."""
        config, generator, family = self.config, self.noise_generator, self.base.family
        if "latent_params" in batch:
            params = batch["latent_params"]
        else:
            with torch.no_grad():
                pixels = batch["pixel_values"].to(self.vae.dtype)
                params = self.vae.encode(pixels).latent_dist.parameters
        latents = sample_latents(params.cpu(), generator, self.vae.config).to(self.accelerator.device)
        if family in ("flux", "sd3"):  # flow matching: velocity regression, per-sample σ weights
            embeds, pooled = self.prompt_encoder(batch["captions"])
            pred, target, weights = flow_matching_prediction(
                family, self.prepared_denoiser, latents, embeds, pooled, self.noise_scheduler, generator, config
            )
            return dreambooth_loss(pred, target, int(batch["num_instance"]), config.prior_loss_weight, weights)
        noise, timesteps = draw_noise(latents, self.noise_scheduler, generator, config.noise_offset)
        noisy = self.noise_scheduler.add_noise(latents, noise, timesteps)
        embeds, pooled = self.prompt_encoder(batch["captions"])
        added = None
        if family == "sdxl":
            time_ids = add_time_ids(batch["original_sizes"], batch["crop_top_left"], batch["target_sizes"])
            added = {"text_embeds": pooled, "time_ids": time_ids.to(embeds.dtype)}
        pred = self.prepared_denoiser(noisy, timesteps, embeds, added_cond_kwargs=added).sample
        target = prediction_target(self.noise_scheduler, latents, noise, timesteps)
        weights = snr_weights(self.noise_scheduler, timesteps, config.snr_gamma) if config.snr_gamma else None
        return dreambooth_loss(pred, target, int(batch["num_instance"]), config.prior_loss_weight, weights)

    def optimizer_step(self) -> None:
        """Step (with clipping), or skip a step whose loss was not finite and stop after ``max_nan_steps``."""
        config, acc = self.config, self.accelerator
        if self.accumulated_nonfinite:
            self.optimizer.zero_grad(set_to_none=True)
            self.nan_streak += 1
            logger.warning(
                "non-finite loss at step %d: step skipped (%d in a row)", self.global_step + 1, self.nan_streak
            )
            if self.nan_streak >= config.max_nan_steps:
                last = self.checkpoints_saved[-1] if self.checkpoints_saved else "none"
                raise TrainingDivergedError(
                    f"loss was not finite for {self.nan_streak} consecutive steps (up to step {self.global_step + 1});"
                    f" training stopped. Last good checkpoint: {last}. Lower the learning rate or check the data."
                )
        else:
            self.nan_streak = 0
            if config.max_grad_norm:
                params = [p for group in self.optimizer.param_groups for p in group["params"]]
                acc.clip_grad_norm_(params, config.max_grad_norm)
            self.optimizer.step()
        self.lr_scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.last_loss = float(np.mean(self.accumulated_losses)) if self.accumulated_losses else float("nan")
        self.accumulated_losses, self.accumulated_nonfinite = [], False

    def on_step_end(self, epoch: int) -> None:
        config, acc, step = self.config, self.accelerator, self.global_step
        lrs = self.lr_scheduler.get_last_lr()
        logs = {"loss": self.last_loss, "lr": lrs[0]}
        if self.text_encoder_active:
            logs["text_encoder_lr"] = lrs[1]
        acc.log(logs, step=step)
        self.progress.update(1)
        self.progress.set_postfix(loss=f"{self.last_loss:.4f}", refresh=False)
        if config.text_encoder_steps and step == config.text_encoder_steps:
            self.finish_text_encoder_stage()
        if step % config.checkpointing_steps == 0 and self.nan_streak == 0:
            self.save_checkpoint(epoch)
        if config.validation_prompt and step % self.validation_interval == 0:
            self.validate()
        for callback in self.callbacks:
            if hasattr(callback, "on_step_end"):
                callback.on_step_end(self, step, logs)

    def save_checkpoint(self, epoch: int) -> Path:
        config = self.config
        state = {
            "epoch": self.global_step // self.steps_per_epoch,
            "step_in_epoch": self.global_step % self.steps_per_epoch,
            "micro_batches_per_epoch": self.micro_batches_per_epoch,
            "num_processes": self.accelerator.num_processes,
            "text_encoder_frozen": config.train_text_encoder and not self.text_encoder_active,
            "loss": self.last_loss,
            "run_id": config.run_identity(),
            "config": {k: getattr(config, k) for k in RUN_IDENTITY_FIELDS},
        }
        path = self.checkpoints.save(self.global_step, state, {"noise_rng": self.noise_generator})
        self.checkpoints_saved.append(path)
        if self.session is not None and self.accelerator.is_main_process:
            self.session.on_checkpoint(path, self.global_step)
        for callback in self.callbacks:
            if hasattr(callback, "on_checkpoint"):
                callback.on_checkpoint(self, path)
        return path

    # ------------------------------------------------------------------------------------------------ validation
    def validate(self) -> list[Path]:
        config, acc = self.config, self.accelerator
        if not acc.is_main_process:
            return []
        prompts = [config.expand(p) for p in config.validation_prompt]
        models = [acc.unwrap_model(self.prepared_denoiser), *self.trained_text_encoders()]
        modes = [m.training for m in models]
        for m in models:
            m.eval()
        pipe = self.build_pipeline()
        images = render_validation(
            pipe,
            prompts,
            config.num_validation_images,
            config.seed,
            config.resolution,
            config.validation_inference_steps,
            config.validation_guidance_scale,
            self.weight_dtype,
        )
        if self.quality is not None:
            is_best = score_validation(self.quality, acc, self.global_step, pipe, images, prompts, self.last_loss)
            if config.select_best_by and is_best:
                save_best_weights(self.output_dir, self.global_step, self.save_weights)
        for m, mode in zip(models, modes):
            m.train(mode)
        paths = save_samples(images, prompts, self.samples_dir / f"step-{self.global_step:06d}")
        log_to_trackers(acc, images, prompts, self.global_step)
        self.samples, self.sample_images = paths, [img for row in images for img in row]
        for callback in self.callbacks:
            if hasattr(callback, "on_validation"):
                callback.on_validation(self, self.global_step, paths)
        return paths

    # ------------------------------------------------------------------------------------------------ 9. output
    def finish(self) -> DreamBoothResult:
        config, acc = self.config, self.accelerator
        acc.wait_for_everyone()
        result = DreamBoothResult(self.output_dir, self.global_step, self.last_loss, list(self.checkpoints_saved))
        if acc.is_main_process:
            if config.validation_prompt and self.global_step % self.validation_interval:
                self.validate()
            result.samples = list(self.samples)
            best = self.keep_best_weights()
            result.lora_weights = self.save_output()
            finish_quality(config, self.quality, best, self.output_dir, self.samples_dir)
            if self.session is not None:
                self.session.on_train_end(self.output_dir, self.global_step)
            if config.push_to_hub:
                repo_id = config.hub_model_id or self.output_dir.resolve().name
                hub_base = self.base.source if self.base.kind in ("hub", "registry") else None
                url = output_lib.push_output_to_hub(self.output_dir, repo_id, config.hub_private, hub_base)
                logger.info("pushed to %s", url)
        acc.wait_for_everyone()
        acc.end_training()  # closes trackers (and the process group): no collective after this
        for callback in self.callbacks:
            if hasattr(callback, "on_train_end"):
                callback.on_train_end(self, result)
        return result

    def keep_best_weights(self) -> int | None:
        """With ``--select_best_by``: load the best step's weights into the models (before the output is written)."""
        if self.quality is None or self.quality.best_step is None:
            return None
        best = self.quality.best_step
        if best != self.global_step:
            self.load_weights(best_weights_folder(best, self.output_dir, self.checkpoints_dir))
        logger.info(
            "keeping the weights of step %d (best %s of %s)",
            best,
            self.config.select_best_by,
            ", ".join(str(s) for s in sorted(self.quality.history)),
        )
        return best

    def save_output(self) -> Path | None:
        """Write the pipeline (full) or the LoRA file (+ fused pipeline with merge_lora), config and model card."""
        denoiser = self.accelerator.unwrap_model(self.prepared_denoiser)
        return output_lib.save_output(
            self.config,
            self.base,
            self.output_dir,
            denoiser,
            self.trained_text_encoders(),
            self.build_pipeline,
            self.cast_frozen,
            self.sample_images,
            self.global_step,
            concept_summary(self.concepts, self.config.expand) if self.concepts else None,
        )
