"""The state of a DreamBooth run and the steps that build it (1-7 of [`DreamBoothTrainer.setup`]).

[`TrainerSetup.__init__`] declares every attribute a run has, typed and grouped by the step that sets it, so the
loop and the output steps of [`DreamBoothTrainer`] (its subclass) read only declared state.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ...utils.logging import get_logger
from . import output as output_lib
from .checkpointing import CheckpointManager, check_resumable, read_trainer_state
from .class_images import default_class_dir
from .components import FAMILIES, ResolvedBaseModel, apply_family_options, pipeline_class, resolve_base_model
from .conditioning import PromptEncoder
from .config import DEFAULT_OUTPUT_DIR, DreamBoothConfig
from .data import concept_records, list_images, load_records, read_caption, repeat_records
from .guard import plan_start
from .lora import load_lora, save_lora
from .optim import build_lr_scheduler, build_optimizer, drop_param_group
from .preparation import build_training_data, configure_models, load_base_and_class_images
from .runtime import check_runtime, derived_seed, use_cpu
from .validation import quality_tracker_for_run

if TYPE_CHECKING:
    from accelerate import Accelerator

    from ...evaluation import QualityTracker
    from .session import TrainingSession

logger = get_logger(__name__)


class TrainerSetup:
    """Everything before the first training step: inputs checked, accelerator, images, models, data, optimizer,
    ``accelerate.prepare``, resume. [`DreamBoothTrainer`] adds the loop, validation and output.

    Args:
        config ([`DreamBoothConfig`]): every option of the run.
        callbacks (`list`, *optional*): see [`DreamBoothTrainer`].
    """

    def __init__(self, config: DreamBoothConfig, callbacks: list | None = None):
        self.config = config
        self.callbacks = list(callbacks or [])

        # 1. Inputs: base model, subjects, folders, session, and where to resume (check_inputs)
        self.base: ResolvedBaseModel | None = None
        self.session: TrainingSession | None = None
        self.session_started = False  # session.on_start ran (main process): failures are recorded in it
        self.concepts: list | None = None  # the --concepts_list subjects, or None for one subject
        self.instance_dir: Path | None = None
        self.instance_paths: list[Path] = []
        self.output_dir: Path | None = None
        self.checkpoints_dir: Path | None = None
        self.samples_dir: Path | None = None
        self.resume_checkpoint: Path | None = None
        self.stale_paths: list[Path] = []  # another run's files, removed with --overwrite_output_dir

        # 2. Accelerator, precision, and the per-process generator of every training draw (setup_accelerator)
        self.accelerator: Accelerator | None = None
        self.weight_dtype: torch.dtype = torch.float32  # dtype of the frozen weights (mixed precision)
        self.noise_generator: torch.Generator | None = None

        # 3.-4. Images, decoded once, and the base pipeline's components
        self.instance_records: list = []
        self.instance_groups: list[int] | None = None  # with a concepts list: the subject of each instance image
        self.class_records: list = []
        self.class_groups: list[int] | None = None
        self.components: dict[str, Any] = {}

        # 5. Models (configure_models); the denoiser is the UNet, or the transformer of Flux/SD3
        self.denoiser: torch.nn.Module | None = None
        self.vae: torch.nn.Module | None = None
        self.text_encoders: list = []  # every text encoder of the family, trained ones first
        self.tokenizers: list = []
        self.inference_scheduler = None  # the base's scheduler: validation images and the saved pipeline
        self.noise_scheduler = None  # the training noise schedule
        self.cast_frozen = False  # frozen weights are stored in weight_dtype

        # 6. Data, optimizer and schedule, and the models as accelerate.prepare wrapped them
        self.dataset: torch.utils.data.Dataset | None = None
        self.sampler = None  # epoch-seeded: the data order of an epoch is known on resume
        self.train_dataloader: torch.utils.data.DataLoader | None = None
        self.optimizer: torch.optim.Optimizer | None = None  # group 0: denoiser, group 1: text encoder(s)
        self.lr_scheduler = None
        self.prepared_denoiser: torch.nn.Module | None = None
        self.prepared_text_encoders: list = []  # the trained text encoders only
        self.prompt_encoder: PromptEncoder | None = None
        self.checkpoints: CheckpointManager | None = None
        self.micro_batches_per_epoch = 0
        self.steps_per_epoch = 0
        self.validation_interval = 0  # optimizer steps between validations

        # 8. Loop progress: optimizer steps, the text-encoder stage, the losses of the current accumulation window
        self.global_step = 0
        self.text_encoder_active = False  # the text encoder(s) are still being trained
        self.last_loss: float | None = None
        self.nan_streak = 0  # consecutive steps skipped for a non-finite loss
        self.accumulated_losses: list[float] = []
        self.accumulated_nonfinite = False
        self.progress = None  # the tqdm bar of the loop

        # Outputs so far, and the quality metrics (7b; main process with --quality_metrics)
        self.checkpoints_saved: list[Path] = []
        self.samples: list[Path] = []  # the latest validation's image files
        self.sample_images: list = []  # the latest validation's images, for the grid of the model card
        self.quality: QualityTracker | None = None

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
        self.base = resolve_base_model(
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
                self.session_started = True

    # ------------------------------------------------------------------------------------------------ 3. images
    def load_instance_images(self) -> None:
        config = self.config
        size = None if config.use_aspect_ratio_buckets else config.resolution  # buckets resize per bucket later
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
        fallback = self.session.class_dir if self.session else default_class_dir()  # without --class_data_dir
        loaded = load_base_and_class_images(self.config, self.base, self.accelerator, self.concepts, fallback)
        self.components = loaded.components
        self.class_records, self.class_groups = loaded.class_records, loaded.class_groups

    # ------------------------------------------------------------------------------------------------ 5. models
    def configure_models(self) -> None:
        models = configure_models(
            self.config, self.base.family, self.components, self.weight_dtype, self.accelerator.device
        )
        self.denoiser, self.vae = models.denoiser, models.vae
        self.text_encoders, self.tokenizers = models.text_encoders, models.tokenizers
        self.inference_scheduler, self.noise_scheduler = models.inference_scheduler, models.noise_scheduler
        self.cast_frozen = models.cast_frozen

    # ------------------------------------------------------------------------------------------------ 6. data/optim
    def create_dataloader(self) -> None:
        config = self.config
        self.dataset, self.sampler, self.train_dataloader = build_training_data(
            config,
            self.base.family,
            self.instance_records,
            self.class_records,
            self.instance_groups,
            self.class_groups,
            self.vae,
        )
        if config.max_train_steps is None:  # --num_train_epochs without --max_train_steps, as in diffusers
            per_process = math.ceil(len(self.train_dataloader) / self.accelerator.num_processes)
            config.max_train_steps = config.num_train_epochs * math.ceil(
                per_process / config.gradient_accumulation_steps
            )

    def create_optimizer(self) -> None:
        config, acc = self.config, self.accelerator
        scale = config.train_batch_size * config.gradient_accumulation_steps * acc.num_processes
        denoiser_params = [p for p in self.denoiser.parameters() if p.requires_grad]
        text_params = [p for e in self.text_encoders for p in e.parameters() if p.requires_grad]
        self.optimizer = build_optimizer(config, denoiser_params, text_params, scale if config.scale_lr else 1.0)
        self.lr_scheduler = build_lr_scheduler(config, self.optimizer, acc.num_processes)

    def prepare_with_accelerator(self) -> None:
        config, acc = self.config, self.accelerator
        num_trained = FAMILIES[self.base.family].trainable_text_encoders if config.train_text_encoder else 0
        trained_encoders = self.text_encoders[:num_trained]
        prepared = acc.prepare(
            self.denoiser, *trained_encoders, self.optimizer, self.train_dataloader, self.lr_scheduler
        )
        self.prepared_denoiser = prepared[0]
        self.prepared_text_encoders = list(prepared[1 : 1 + num_trained])
        self.optimizer, self.train_dataloader, self.lr_scheduler = prepared[1 + num_trained :]
        self.text_encoder_active = config.train_text_encoder
        self.prompt_encoder = PromptEncoder(
            self.base.family,
            self.tokenizers,
            self.prepared_text_encoders + self.text_encoders[num_trained:],
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

    # ------------------------------------------------------------------------------------------------ weights I/O
    def trained_text_encoders(self) -> list:
        return [self.accelerator.unwrap_model(e) for e in self.prepared_text_encoders]

    def save_weights(self, folder: Path) -> None:
        """Trained weights only, diffusers layout (used by checkpoints; loadable for previews)."""
        denoiser = self.accelerator.unwrap_model(self.prepared_denoiser)
        if self.config.use_lora:
            save_lora(folder, self.base.family, denoiser, self.trained_text_encoders())
            return
        denoiser.save_pretrained(folder / FAMILIES[self.base.family].denoiser, safe_serialization=True)
        for name, encoder in zip(FAMILIES[self.base.family].text_encoders, self.trained_text_encoders()):
            encoder.save_pretrained(folder / name)

    def load_weights(self, folder: Path) -> None:
        denoiser = self.accelerator.unwrap_model(self.prepared_denoiser)
        if self.config.use_lora:
            load_lora(folder, self.base.family, denoiser, self.trained_text_encoders())
            return
        saved = type(denoiser).from_pretrained(folder / FAMILIES[self.base.family].denoiser)
        denoiser.load_state_dict(saved.state_dict())
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

    def setup_quality(self) -> None:
        """With ``--quality_metrics`` (main process): the quality tracker, and the base model's drift references."""
        config, acc = self.config, self.accelerator
        if not config.quality_metrics or not acc.is_main_process:
            return
        resumed = self.resume_checkpoint is not None
        self.quality = quality_tracker_for_run(
            config,
            self.concepts,
            self.instance_records,
            self.output_dir,
            self.global_step if resumed else None,
            acc.device,
        )
        self.quality.prepare(None if resumed else self.build_pipeline())

    # ------------------------------------------------------------------------------------------------ validation
    def build_pipeline(self):
        """A pipeline around the in-training modules (unwrapped), with the base's inference scheduler."""
        spec = FAMILIES[self.base.family]
        acc = self.accelerator
        encoders = self.trained_text_encoders() + self.text_encoders[len(self.prepared_text_encoders) :]
        parts = {
            "vae": self.vae,
            spec.denoiser: acc.unwrap_model(self.prepared_denoiser),
            "scheduler": self.inference_scheduler,
            **dict(zip(spec.text_encoders, encoders)),
            **dict(zip(spec.tokenizers, self.tokenizers)),
        }
        if spec.safety_checker:
            parts.update(safety_checker=None, feature_extractor=None, requires_safety_checker=False)
        pipe = pipeline_class(self.base.family)(**parts)
        pipe.set_progress_bar_config(disable=True)
        return pipe
