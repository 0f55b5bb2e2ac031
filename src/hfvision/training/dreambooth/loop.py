"""The per-step part of [`DreamBoothTrainer`]: micro-batches, loss, optimizer steps, logging, checkpoints, and the
end of the two-stage text-encoder schedule.

Every random draw of a step (latent sample, noise, noise offset, timesteps) comes from ``self.noise_generator``, a
per-process CPU generator saved in each checkpoint; data order comes from the epoch-seeded sampler. Together with
accelerate's state this is what makes a resumed run bit-identical to an uninterrupted one.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ...utils.logging import get_logger
from .config import RUN_IDENTITY_FIELDS
from .loss import (
    draw_noise,
    dreambooth_loss,
    flow_matching_prediction,
    prediction_target,
    sample_latents,
    snr_weights,
)
from .optim import drop_param_group
from .runtime import TrainingDivergedError
from .sdxl import add_time_ids

logger = get_logger(__name__)


class TrainingLoop:
    """Mixin: the training loop. The trainer's setup steps provide ``config``, ``accelerator``, ``unet_p``,
    ``text_encoders_p``, ``optimizer``, ``lr_scheduler``, ``train_dataloader``, ``sampler``, ``prompt_encoder``,
    ``vae``, ``noise_scheduler``, ``noise_generator``, ``checkpoints`` and ``steps_per_epoch``.
    """

    def finish_text_encoder_stage(self) -> None:
        """End of the two-stage schedule: freeze the text encoder(s) and drop them from the optimizer."""
        if not self.text_encoder_active:
            return
        dropped = drop_param_group(self.optimizer, 1)
        for encoder in self.trained_text_encoders():
            encoder.requires_grad_(False)
            encoder.eval()
        self.text_encoder_active = False
        self.prompt_encoder.set_trainable(False)
        logger.info(
            "text encoder frozen after step %d (%d tensors dropped from the optimizer)", self.global_step, dropped
        )

    # ------------------------------------------------------------------------------------------------ 8. loop
    def training_loop(self) -> None:
        from accelerate import skip_first_batches
        from tqdm.auto import tqdm

        config, acc = self.config, self.accelerator
        epoch, step_in_epoch = divmod(self.global_step, self.steps_per_epoch)
        self.progress = tqdm(
            total=config.max_train_steps, initial=self.global_step, desc="steps", disable=not acc.is_local_main_process
        )
        self._window_losses, self._window_bad = [], False
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
        models = [self.unet_p, *(self.text_encoders_p if self.text_encoder_active else [])]
        with acc.accumulate(*models):
            loss = self.compute_loss(batch)
            gathered = acc.gather(loss.detach().float().reshape(1))
            if torch.isfinite(gathered).all():  # every process takes the same branch
                acc.backward(loss)
                self._window_losses.append(gathered.mean().item())
            else:
                self._window_bad = True
            if acc.sync_gradients:
                self.optimizer_step()

    def compute_loss(self, batch: dict) -> torch.Tensor:
        """Forward pass: latents, noise, UNet (or Flux/SD3 transformer) prediction, DreamBooth loss (with prior
        preservation)."""
        config, g = self.config, self.noise_generator
        if "latent_params" in batch:
            params = batch["latent_params"]
        else:
            with torch.no_grad():
                pixels = batch["pixel_values"].to(self.vae.dtype)
                params = self.vae.encode(pixels).latent_dist.parameters
        latents = sample_latents(params.cpu(), g, self.vae.config).to(self.accelerator.device)
        if self.base.family in ("flux", "sd3"):  # flow matching: velocity regression, per-sample σ weights
            embeds, pooled = self.prompt_encoder(batch["captions"])
            pred, target, weights = flow_matching_prediction(
                self.base.family, self.unet_p, latents, embeds, pooled, self.noise_scheduler, g, config
            )
            return dreambooth_loss(pred, target, int(batch["num_instance"]), config.prior_loss_weight, weights)
        noise, timesteps = draw_noise(latents, self.noise_scheduler, g, config.noise_offset)
        noisy = self.noise_scheduler.add_noise(latents, noise, timesteps)
        embeds, pooled = self.prompt_encoder(batch["captions"])
        added = None
        if self.base.family == "sdxl":
            time_ids = add_time_ids(batch["original_sizes"], batch["crop_top_left"], batch["target_sizes"])
            added = {"text_embeds": pooled, "time_ids": time_ids.to(embeds.dtype)}
        pred = self.unet_p(noisy, timesteps, embeds, added_cond_kwargs=added).sample
        target = prediction_target(self.noise_scheduler, latents, noise, timesteps)
        weights = snr_weights(self.noise_scheduler, timesteps, config.snr_gamma) if config.snr_gamma else None
        return dreambooth_loss(pred, target, int(batch["num_instance"]), config.prior_loss_weight, weights)

    def optimizer_step(self) -> None:
        config, acc = self.config, self.accelerator
        if self._window_bad:
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
        self.last_loss = float(np.mean(self._window_losses)) if self._window_losses else float("nan")
        self._window_losses, self._window_bad = [], False

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

    # ------------------------------------------------------------------------------------------------ checkpoints
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
