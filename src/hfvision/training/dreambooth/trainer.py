"""`DreamBoothTrainer`: the training run as a readable sequence of named steps, on Accelerate.

Accelerate owns devices, precision, distribution and checkpoint state; PEFT owns LoRA; diffusers provides the
models, noise schedule, LR schedules and min-SNR. This class decides the order of things and keeps every random
draw on explicit, checkpointed generators so that a killed and resumed run ends bit-identical to an uninterrupted
one (on CPU).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ...utils.logging import get_logger
from . import output as output_lib
from .checkpointing import CheckpointManager, check_resumable, read_trainer_state
from .class_images import class_image_key, default_class_dir, generate_class_images, plan_class_images
from .components import (
    FAMILIES,
    BaseModel,
    apply_family_options,
    load_base_pipeline,
    pipeline_class,
    resolve_base_model,
    training_noise_scheduler,
)
from .conditioning import PromptEncoder
from .config import DEFAULT_OUTPUT_DIR, DreamBoothConfig
from .data import (
    DreamBoothDataset,
    EpochSampler,
    build_bucketed_data,
    class_image_specs,
    collate,
    concept_records,
    concept_summary,
    list_images,
    load_records,
    pair_by_group,
    read_caption,
    repeat_records,
)
from .guard import plan_start
from .loop import TrainingLoop
from .lora import TEXT_ENCODER_TARGET_MODULES, add_lora, denoiser_target_modules, load_lora, save_lora
from .optim import build_lr_scheduler, build_optimizer
from .runtime import check_runtime, derived_seed, free_memory, use_cpu
from .sdxl import validate_time_embedding
from .validation import (
    QualityMixin,
    log_to_trackers,
    render_validation,
    save_samples,
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


class DreamBoothTrainer(QualityMixin, TrainingLoop):
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
    """

    def __init__(self, config: DreamBoothConfig, callbacks: list | None = None):
        self.config, self.callbacks = config, list(callbacks or [])
        self.global_step, self.last_loss, self.nan_streak = 0, None, 0
        self.checkpoints_saved: list[Path] = []
        self.samples: list[Path] = []
        self.session = None

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
            if getattr(self, "_session_started", False):  # main process: record it, flush Hub uploads
                self.session.on_failure(err)
            raise

    def setup(self) -> None:
        """Steps 1-7: everything before the first training step (models ready, state resumed)."""
        # 1. Check inputs: everything that can be wrong is reported before a model is loaded.
        self.check_inputs()
        # 2. Accelerator (devices, precision, processes, trackers) and seeds
        self.setup_accelerator()
        # 3. Instance images, decoded once (bad files fail here)
        self.load_instance_images()
        # 4. Base model and class images (generated when missing, memory released afterwards)
        self.load_base_model_and_class_images()
        # 5. Models: freeze, LoRA adapters, precision, gradient checkpointing
        self.configure_models()
        # 6. Data, optimizer, LR schedule, then accelerate.prepare
        self.create_dataloader()
        self.create_optimizer()
        self.prepare_with_accelerator()
        # 7. Resume (models, optimizer, schedule, RNGs, data position, text-encoder stage)
        self.resume()
        # 7b. Quality metrics: embedders, and the base model's class images for the drift score
        self.setup_quality()

    # ------------------------------------------------------------------------------------------------ 1. inputs
    def check_inputs(self) -> None:
        config = self.config
        check_runtime(config)
        self.base: BaseModel = resolve_base_model(
            config.pretrained_model_name_or_path, config.revision, config.resolution, config.force_resolution
        )
        apply_family_options(config, self.base)  # Flux/SD3 options and defaults (SD options refused for them)
        if config.session or config.hub_session:
            from accelerate import PartialState

            from .session import open_session

            state = PartialState(cpu=use_cpu())
            if state.is_main_process:  # restore from the Hub and prepare photos once, then the others open it
                self.session = open_session(config)
            state.wait_for_everyone()
            if not state.is_main_process:
                self.session = open_session(config, prepare=False)
        self.concepts = None
        if config.concepts_list:  # several subjects: every entry checked before a model loads
            from .concepts import load_concepts_list

            self.concepts = load_concepts_list(
                config.concepts_list, config.with_prior_preservation, config.num_class_images
            )
            self.instance_dir = Path(config.concepts_list).parent
            self.instance_paths = []
        else:
            self.instance_dir = Path(self.session.instance_dir if self.session else config.instance_data_dir)
            self.instance_paths = list_images(self.instance_dir)
        in_session = self.session is not None and config.output_dir == DEFAULT_OUTPUT_DIR
        self.output_dir = Path(self.session.model_dir) if in_session else Path(config.output_dir)
        self.checkpoints_dir = Path(self.session.checkpoints_dir) if self.session else self.output_dir
        self.samples_dir = Path(self.session.samples_dir) if self.session else self.output_dir / "samples"
        # No lost work: which checkpoint to resume from, and nothing of another run is overwritten (raises).
        spec = config.resume_from_checkpoint or ("latest" if self.session is not None else None)
        self.resume_checkpoint, self.stale_paths = plan_start(config, spec, self.output_dir, self.checkpoints_dir)

    # ------------------------------------------------------------------------------------------------ 2. accelerator
    def setup_accelerator(self) -> None:
        from accelerate import Accelerator
        from accelerate.utils import DistributedDataParallelKwargs, ProjectConfiguration, set_seed

        config = self.config
        handlers = []
        if self.base.family == "sdxl" and config.train_text_encoder:  # text_encoder's last layer feeds nothing
            handlers.append(DistributedDataParallelKwargs(find_unused_parameters=True))
        self.accelerator = Accelerator(
            cpu=use_cpu(),
            gradient_accumulation_steps=config.gradient_accumulation_steps,
            mixed_precision=config.mixed_precision,
            log_with=None if config.report_to == "none" else config.report_to,
            project_config=ProjectConfiguration(
                project_dir=str(self.output_dir), logging_dir=str(self.output_dir / config.logging_dir)
            ),
            kwargs_handlers=handlers,
        )
        acc = self.accelerator
        if acc.mixed_precision == "fp16" and acc.device.type == "cpu":
            raise ValueError("mixed_precision='fp16' needs a GPU; on CPU use --mixed_precision bf16 or no")
        self.weight_dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(acc.mixed_precision, torch.float32)
        set_seed(config.seed)
        # Noise, timesteps and latent sampling: one generator per process, saved in every checkpoint.
        self.noise_generator = torch.Generator("cpu").manual_seed(
            derived_seed(config.seed, "noise", acc.process_index)
        )
        if config.allow_tf32 and torch.cuda.is_available():
            torch.backends.cuda.matmul.allow_tf32 = True
        if acc.is_main_process:
            output_lib.remove_paths(self.stale_paths)  # --overwrite_output_dir: the previous run's files
            self.output_dir.mkdir(parents=True, exist_ok=True)
            config.to_yaml(self.output_dir / output_lib.CONFIG_NAME)
            if self.session is not None:
                self.session.on_start(config)
                self._session_started = True

    # ------------------------------------------------------------------------------------------------ 3. images
    def load_instance_images(self) -> None:
        config = self.config
        size = None if config.use_aspect_ratio_buckets else config.resolution  # buckets resize per bucket later
        self.instance_groups = None
        if self.concepts is not None:
            self.instance_records, self.instance_groups = concept_records(
                self.concepts,
                config.caption_from_filename,
                config.expand,
                size,
                config.repeats,
                strict=config.bad_images == "error",
            )
        else:
            prompt = config.resolved_instance_prompt
            paths = self.instance_paths
            captions = [config.expand(read_caption(p, prompt, config.caption_from_filename)) for p in paths]
            self.instance_records = repeat_records(
                load_records(paths, captions, size, strict=config.bad_images == "error"), config.repeats
            )
        logger.info("%d instance images from %s", len(self.instance_records), self.instance_dir)

    # ------------------------------------------------------------------------------------------------ 4. base + class
    def load_base_model_and_class_images(self) -> None:
        config, acc = self.config, self.accelerator
        self.class_records, self.class_groups, plans = [], None, []
        if config.with_prior_preservation:  # one (folder, prompt, count) per subject
            fallback = self.session.class_dir if self.session else default_class_dir()
            for class_dir, prompt, count in class_image_specs(config, self.concepts, fallback):
                key = class_image_key(self.base.source, self.base.revision, prompt, config.resolution, config.seed)
                plans.append((Path(class_dir), prompt, key, *plan_class_images(Path(class_dir), key, count)))
        missing = any(plan[-1] for plan in plans)
        generation_dtype = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}.get(
            config.prior_generation_precision, torch.float16 if acc.device.type == "cuda" else torch.float32
        )
        if missing and generation_dtype != torch.float32:  # own low-precision copy, freed before training
            low = {}

            def load_low():
                low.setdefault("pipe", load_base_pipeline(self.base, generation_dtype))
                return low["pipe"]

            for class_dir, prompt, key, _, todo in plans:
                if todo:
                    self.class_dir = class_dir
                    self.generate_class_images(key, todo, load_low, prompt)
            low.clear()
            free_memory()
        pipe = load_base_pipeline(self.base, torch.float32, config.variant)
        size = None if config.use_aspect_ratio_buckets else config.resolution
        groups = []
        for group, (class_dir, prompt, key, class_paths, todo) in enumerate(plans):
            if todo and generation_dtype == torch.float32:
                self.class_dir = class_dir
                self.generate_class_images(key, todo, lambda: pipe, prompt)
            records = load_records(class_paths, [prompt] * len(class_paths), size, strict=config.bad_images == "error")
            self.class_records += records
            groups += [group] * len(records)  # skipped bad images: the groups stay aligned with the records
        if self.concepts is not None and plans:
            self.class_groups = groups
        if plans:
            self.class_dir = plans[0][0]
        self.components = dict(pipe.components)

    def generate_class_images(self, key: str, missing: list[int], load, prompt: str) -> None:
        config, acc = self.config, self.accelerator
        logger.info("generating %d class images into %s", len(missing), self.class_dir)
        meta = {
            "base_model": self.base.source,
            "revision": self.base.revision,
            "seed": config.seed,
            "class_prompt": prompt,
            "resolution": config.resolution,
        }
        with acc.split_between_processes(missing) as mine:
            pipe = generate_class_images(
                load,
                self.class_dir,
                key,
                list(mine),
                meta["class_prompt"],
                config.resolution,
                config.seed,
                batch_size=config.sample_batch_size,
                num_inference_steps=config.class_inference_steps,
                device=acc.device,
                show_progress=acc.is_local_main_process,
                metadata=meta,
            )
            del pipe  # a low-precision generation copy is freed here; the training copy lives on
        acc.wait_for_everyone()

    # ------------------------------------------------------------------------------------------------ 5. models
    def configure_models(self) -> None:
        config, acc, c = self.config, self.accelerator, self.components
        spec = FAMILIES[self.base.family]
        self.unet, self.vae, self.inference_scheduler = c[spec.denoiser], c["vae"], c["scheduler"]  # unet: denoiser
        self.text_encoders = [c[name] for name in spec.text_encoders]
        self.tokenizers = [c[name] for name in spec.tokenizers]
        self.noise_scheduler = training_noise_scheduler(self.inference_scheduler, spec.flow)
        trainable_encoders = self.text_encoders[: spec.trainable_text_encoders] if config.train_text_encoder else []
        if self.base.family == "sdxl":
            validate_time_embedding(self.unet)
        for model in (self.vae, self.unet, *self.text_encoders):
            model.requires_grad_(False)
        if config.use_lora:
            lora = dict(
                rank=config.rank, alpha=config.lora_alpha, dropout=config.lora_dropout, use_dora=config.use_dora
            )
            targets = denoiser_target_modules(self.base.family, config.lora_layers, config.lora_blocks)
            add_lora(self.unet, target_modules=targets, **lora)
            for encoder in trainable_encoders:
                add_lora(encoder, target_modules=TEXT_ENCODER_TARGET_MODULES, **lora)
        else:
            self.unet.requires_grad_(True)
            for encoder in trainable_encoders:
                encoder.requires_grad_(True)
        # Frozen weights may use the mixed-precision dtype; trainable ones stay float32.
        self.cast_frozen = self.weight_dtype != torch.float32
        upcast_vae = self.weight_dtype == torch.float16 and getattr(self.vae.config, "force_upcast", False)
        self.vae.to(acc.device)
        if self.cast_frozen and not upcast_vae:
            self.vae.to(dtype=self.weight_dtype)
        for model in [self.unet] + self.text_encoders:
            model.to(acc.device)
            quantized = getattr(model, "is_quantized", False)  # --quantize_base: packed weights keep their dtype
            for param in model.parameters():
                if self.cast_frozen and not param.requires_grad and not quantized:
                    param.data = param.data.to(self.weight_dtype)
        if config.gradient_checkpointing:
            self.unet.enable_gradient_checkpointing()
            for encoder in trainable_encoders:
                # transformers 5 renamed it (the old name warns); keep both working
                enable = getattr(encoder, "activation_checkpointing_enable", encoder.gradient_checkpointing_enable)
                enable()
        self.unet.train()
        for encoder in self.text_encoders:
            encoder.train(any(encoder is e for e in trainable_encoders))

    # ------------------------------------------------------------------------------------------------ 6. data/optim
    def create_dataloader(self) -> None:
        config = self.config
        if config.use_aspect_ratio_buckets:  # batches of one shape; class images cropped to their batch's bucket
            self.dataset, self.sampler = build_bucketed_data(
                config, self.instance_records, self.class_records, self.instance_groups, self.class_groups
            )
            if config.cache_latents:
                self.cache_latents()
            self.train_dataloader = torch.utils.data.DataLoader(
                self.dataset, batch_sampler=self.sampler, collate_fn=collate, num_workers=config.dataloader_num_workers
            )
        else:
            self.dataset = DreamBoothDataset(
                self.instance_records,
                self.class_records,
                config.resolution,
                config.center_crop,
                config.random_flip,
                config.caption_dropout,
            )
            if self.class_groups is not None:
                self.dataset.class_pairs = pair_by_group(self.instance_groups, self.class_groups)
            if config.cache_latents:
                self.cache_latents()
            self.sampler = EpochSampler(len(self.dataset), config.seed)
            self.train_dataloader = torch.utils.data.DataLoader(
                self.dataset,
                batch_size=config.train_batch_size,
                sampler=self.sampler,
                collate_fn=collate,
                num_workers=config.dataloader_num_workers,
            )
        if config.max_train_steps is None:  # --num_train_epochs without --max_train_steps, as in diffusers
            per_process = math.ceil(len(self.train_dataloader) / self.accelerator.num_processes)
            config.max_train_steps = config.num_train_epochs * math.ceil(
                per_process / config.gradient_accumulation_steps
            )

    def cache_latents(self) -> None:
        fixed_crops = FAMILIES[self.base.family].flow  # diffusers' Flux/SD3 scripts: one random crop per image
        if self.dataset.has_random_crops() and not fixed_crops:
            raise ValueError("cache_latents needs one crop per image: pass --center_crop or use square images")
        params = {}
        bucketed = hasattr(self.dataset, "cache_keys")  # one latent per (image, bucket) it can be drawn at
        keys = self.dataset.cache_keys() if bucketed else range(len(self.dataset.records))
        with torch.no_grad():
            for key in keys:
                if bucketed:
                    example = self.dataset.bucket_example(*key, None, False)
                else:
                    rng = np.random.default_rng([self.config.seed, key]) if fixed_crops else None
                    example = self.dataset.example(key, rng=rng)
                pixels = example["pixel_values"][None]
                encoded = self.vae.encode(pixels.to(self.vae.device, self.vae.dtype)).latent_dist.parameters
                params[key] = encoded[0].float().cpu()
        self.dataset.latent_params = params

    def create_optimizer(self) -> None:
        config, acc = self.config, self.accelerator
        scale = config.train_batch_size * config.gradient_accumulation_steps * acc.num_processes
        unet_params = [p for p in self.unet.parameters() if p.requires_grad]
        text_params = [p for e in self.text_encoders for p in e.parameters() if p.requires_grad]
        self.optimizer = build_optimizer(config, unet_params, text_params, scale if config.scale_lr else 1.0)
        self.lr_scheduler = build_lr_scheduler(config, self.optimizer, acc.num_processes)

    def prepare_with_accelerator(self) -> None:
        config, acc = self.config, self.accelerator
        n_trained = FAMILIES[self.base.family].trainable_text_encoders if config.train_text_encoder else 0
        trained_encoders = self.text_encoders[:n_trained]
        prepared = acc.prepare(self.unet, *trained_encoders, self.optimizer, self.train_dataloader, self.lr_scheduler)
        self.unet_p, *rest = prepared
        n = len(trained_encoders)
        self.text_encoders_p, (self.optimizer, self.train_dataloader, self.lr_scheduler) = rest[:n], rest[n:]
        self.text_encoder_active = config.train_text_encoder
        self.prompt_encoder = PromptEncoder(
            self.base.family,
            self.tokenizers,
            self.text_encoders_p + self.text_encoders[n:],
            self.text_encoders,
            acc.device,
            cache=config.pre_compute_text_embeddings,
            max_sequence_length=config.max_sequence_length,
        )
        self.prompt_encoder.set_trainable(self.text_encoder_active)
        self.prompt_encoder.warn_if_truncated([r.caption for r in self.dataset.records])
        self.checkpoints = CheckpointManager(
            acc, self.checkpoints_dir, config.checkpoints_total_limit, self.save_weights, self.load_weights
        )
        self.micro_batches_per_epoch = len(self.train_dataloader)
        self.steps_per_epoch = math.ceil(self.micro_batches_per_epoch / config.gradient_accumulation_steps)
        self.validation_interval = (
            config.validation_epochs * self.steps_per_epoch if config.validation_epochs else config.validation_steps
        )
        if acc.is_main_process and config.report_to != "none":
            flat = {k: v if isinstance(v, (int, float, str, bool)) else str(v) for k, v in config.to_dict().items()}
            acc.init_trackers(config.tracker_project_name, config=flat)

    # ------------------------------------------------------------------------------------------------ weights I/O
    def trained_text_encoders(self) -> list:
        return [self.accelerator.unwrap_model(e) for e in self.text_encoders_p]

    def save_weights(self, folder: Path) -> None:
        """Trained weights only, diffusers layout (used by checkpoints; loadable for previews)."""
        unet = self.accelerator.unwrap_model(self.unet_p)
        if self.config.use_lora:
            save_lora(folder, self.base.family, unet, self.trained_text_encoders())
            return
        unet.save_pretrained(folder / FAMILIES[self.base.family].denoiser, safe_serialization=True)
        for name, encoder in zip(FAMILIES[self.base.family].text_encoders, self.trained_text_encoders()):
            encoder.save_pretrained(folder / name)

    def load_weights(self, folder: Path) -> None:
        unet = self.accelerator.unwrap_model(self.unet_p)
        if self.config.use_lora:
            load_lora(folder, self.base.family, unet, self.trained_text_encoders())
            return
        unet.load_state_dict(type(unet).from_pretrained(folder / FAMILIES[self.base.family].denoiser).state_dict())
        for name, encoder in zip(FAMILIES[self.base.family].text_encoders, self.trained_text_encoders()):
            encoder.load_state_dict(type(encoder).from_pretrained(folder / name).state_dict())

    # ------------------------------------------------------------------------------------------------ 7. resume
    def resume(self) -> None:
        config, checkpoint = self.config, self.resume_checkpoint
        if checkpoint is None:
            if config.resume_from_checkpoint or self.session is not None:
                logger.info("no checkpoint of this run in %s yet: starting from step 0", self.checkpoints_dir)
            return
        state = read_trainer_state(checkpoint)
        check_resumable(checkpoint, state, config, self.accelerator.num_processes, self.micro_batches_per_epoch)
        if state.get("text_encoder_frozen"):
            self.finish_text_encoder_stage()  # the saved optimizer has an empty text-encoder group
        self.checkpoints.load(checkpoint, {"noise_rng": self.noise_generator})
        self.global_step = int(state["global_step"])
        logger.info("resumed from %s at step %d", checkpoint, self.global_step)

    # ------------------------------------------------------------------------------------------------ validation
    def build_pipeline(self):
        """A pipeline around the in-training modules (unwrapped), with the base's inference scheduler."""
        spec = FAMILIES[self.base.family]
        acc = self.accelerator
        encoders = self.trained_text_encoders() + self.text_encoders[len(self.text_encoders_p) :]
        parts = {
            "vae": self.vae,
            spec.denoiser: acc.unwrap_model(self.unet_p),
            "scheduler": self.inference_scheduler,
            **dict(zip(spec.text_encoders, encoders)),
            **dict(zip(spec.tokenizers, self.tokenizers)),
        }
        if self.base.family == "sd":
            parts.update(safety_checker=None, feature_extractor=None, requires_safety_checker=False)
        pipe = pipeline_class(self.base.family)(**parts)
        pipe.set_progress_bar_config(disable=True)
        return pipe

    def validate(self) -> list[Path]:
        config, acc = self.config, self.accelerator
        if not acc.is_main_process:
            return []
        prompts = [config.expand(p) for p in config.validation_prompt]
        models = [acc.unwrap_model(self.unet_p), *self.trained_text_encoders()]
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
        if getattr(self, "quality", None) is not None:
            self.score_quality(pipe, images, prompts)
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
            self.finish_quality(best)
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

    def save_output(self) -> Path | None:
        """Write the pipeline (full) or the LoRA file (+ fused pipeline with merge_lora), config and model card."""
        unet = self.accelerator.unwrap_model(self.unet_p)
        return output_lib.save_output(
            self.config,
            self.base,
            self.output_dir,
            unet,
            self.trained_text_encoders(),
            self.build_pipeline,
            self.cast_frozen,
            getattr(self, "sample_images", None),
            self.global_step,
            self.text_encoders[0],
            concept_summary(self.concepts, self.config.expand) if self.concepts else None,
        )
