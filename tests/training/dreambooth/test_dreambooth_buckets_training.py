"""Aspect-ratio buckets in real tiny training runs (SD 1.x and SDXL): one shape per batch, SDXL's size/crop ids equal
the crop each image received, class images cropped to their instance batch's bucket, and exact resume."""

from __future__ import annotations

import pytest

N = 2


# bucket options: sides from 32 to 96 px in 16 px steps (``shaped_dir``'s photos fall into several buckets)
SHAPED_BUCKETS = dict(use_aspect_ratio_buckets=True, bucket_reso_steps=16, min_bucket_reso=32, max_bucket_reso=96)


@pytest.fixture(scope="session")
def shaped_dir(tmp_path_factory):
    """Portrait, landscape and square photos (so computed buckets differ per image)."""
    from hfvision.testing import sample_image

    folder = tmp_path_factory.mktemp("shaped")
    sample_image("astronaut").resize((48, 80)).save(folder / "portrait.png")  # w x h
    sample_image("coffee").resize((80, 48)).save(folder / "landscape.png")
    sample_image("rocket").resize((70, 70)).save(folder / "square.png")
    sample_image("chelsea").resize((50, 90)).save(folder / "tall.png")
    return folder


class _Recorder:
    """A trainer mixin that records every batch's pixel shapes, SDXL time ids and image ids."""

    def compute_loss(self, batch):
        from hfvision.training.dreambooth.sdxl import add_time_ids

        ids = add_time_ids(batch["original_sizes"], batch["crop_top_left"], batch["target_sizes"])
        self.seen.append(
            {
                "shape": tuple(batch["pixel_values"].shape),
                "time_ids": ids,
                "image_ids": batch["image_ids"].tolist(),
                "num_instance": int(batch["num_instance"]),
            }
        )
        return super().compute_loss(batch)


def _train_recording(kwargs, trainer_class=None):
    from hfvision.training import DreamBoothConfig, DreamBoothTrainer

    cls = type("RecordingTrainer", (_Recorder, trainer_class or DreamBoothTrainer), {})
    trainer = cls(DreamBoothConfig(**kwargs))
    trainer.seen = []
    return trainer, trainer.train()


@pytest.mark.parametrize("family", ["sd1", "sdxl"])
def test_every_batch_is_one_bucket_and_time_ids_match_the_crop(family, tiny_kwargs, shaped_dir):
    kwargs = tiny_kwargs(
        family,
        instance_data_dir=str(shaped_dir),
        **SHAPED_BUCKETS,
        max_train_steps=4,
        train_batch_size=2,
        random_flip=False,
    )
    trainer, result = _train_recording(kwargs)
    assert result.global_step == 4 and len(trainer.seen) == 4
    dataset = trainer.dataset
    shapes = set()
    for batch in trainer.seen:
        n = batch["num_instance"]
        height, width = batch["shape"][-2:]
        shapes.add((height, width))
        # instance and class halves: all the instance images' bucket
        for image_id in batch["image_ids"][:n]:
            assert dataset.buckets[dataset.bucket_of[image_id]] == (height, width)
        assert batch["shape"][0] == 2 * n  # every instance image has its class image, same shape
        for row, image_id in zip(batch["time_ids"].tolist(), batch["image_ids"]):
            original = dataset.records[image_id].original_size
            assert row[:2] == list(original)  # original_size: before any resize
            assert row[4:] == [height, width]  # target_size: the bucket
            top, left = row[2:4]
            assert 0 <= top and 0 <= left
    assert len(shapes) > 1  # the photos really went to different buckets
    # the crop recorded for one item equals resize_and_crop's on the original photo with the same seed
    import numpy as np

    from hfvision.data import load_image
    from hfvision.training.dreambooth.buckets import resize_and_crop

    batch = next(iter(trainer.sampler.epoch_batches(0)))
    index, _, seed = batch[0]
    item = dataset[(index, None, seed)]["instance"]
    bucket = dataset.buckets[dataset.bucket_of[index]]
    _, info = resize_and_crop(load_image(dataset.records[index].path), bucket, np.random.default_rng(seed))
    assert (tuple(item["original_size"]), tuple(item["crop_top_left"]), tuple(item["target_size"])) == (
        info.original_size,
        info.crops_coords_top_left,
        info.target_size,
    )


def test_explicit_bucket_list_and_cached_latents(tiny_kwargs, shaped_dir):
    """An explicit list; cache_latents keeps one latent per (image, bucket), and the run trains on their shapes."""
    kwargs = tiny_kwargs(
        instance_data_dir=str(shaped_dir),
        use_aspect_ratio_buckets=True,
        aspect_ratio_buckets="64,64;80,48;48,80",
        center_crop=True,
        cache_latents=True,
        max_train_steps=3,
    )
    trainer, result = _train_recording_latents(kwargs)
    dataset = trainer.dataset
    assert set(dataset.buckets) <= {(64, 64), (80, 48), (48, 80)} and len(dataset.buckets) >= 2
    factor = 2 ** (len(trainer.vae.config.block_out_channels) - 1)
    assert {b for _, b in dataset.latent_params} == set(range(len(dataset.buckets)))  # class images: every bucket
    for (_, bucket), params in dataset.latent_params.items():
        height, width = dataset.buckets[bucket]
        assert params.shape[-2:] == (height // factor, width // factor)
    assert result.global_step == 3


def _train_recording_latents(kwargs):
    from hfvision.training import DreamBoothConfig, DreamBoothTrainer

    trainer = DreamBoothTrainer(DreamBoothConfig(**kwargs))
    return trainer, trainer.train()


def test_bucket_flags_are_checked_before_loading():
    from hfvision.training import DreamBoothConfig

    base = dict(pretrained_model_name_or_path="sd15", instance_data_dir="photos")
    with pytest.raises(ValueError, match="needs --use_aspect_ratio_buckets"):
        DreamBoothConfig(**base, aspect_ratio_buckets="512,512")
    with pytest.raises(ValueError, match="multiples of 8"):
        DreamBoothConfig(**base, use_aspect_ratio_buckets=True, aspect_ratio_buckets="512,500")
    with pytest.raises(ValueError, match="bucket_reso_steps"):
        DreamBoothConfig(**base, use_aspect_ratio_buckets=True, bucket_reso_steps=60)
    config = DreamBoothConfig(**base, use_aspect_ratio_buckets=True)
    assert config.bucket_settings() == (256, 1024, 64)  # kohya's defaults at 512 px


def test_cli_flags(tmp_path):
    from hfvision.training.dreambooth.args import parse_dreambooth_args

    config = parse_dreambooth_args(
        [
            "--pretrained_model_name_or_path",
            "sd15",
            "--instance_data_dir",
            "photos",
            "--use_aspect_ratio_buckets",
            "--aspect_ratio_buckets",
            "512,512;384,640",
            "--repeats",
            "3",
            "--caption_dropout",
            "0.1",
            "--quality_metrics",
            "--validation_prompt",
            "a photo of {token}",
            "--select_best_by",
            "clip_t",
            "--quality_dino_model",
            "dino/",
        ]
    )
    assert (config.aspect_ratio_buckets, config.repeats, config.caption_dropout) == ("512,512;384,640", 3, 0.1)
    assert (config.select_best_by, config.quality_dino_model, config.quality_metrics) == ("clip_t", "dino/", True)
    with pytest.raises(SystemExit):
        parse_dreambooth_args(
            ["--pretrained_model_name_or_path", "sd15", "--instance_data_dir", "photos", "--select_best_by", "fid"]
        )


def test_bucket_no_upscale_never_enlarges(shaped_dir):
    """kohya's bucket_no_upscale: each photo's own shape, shrunk to about resolution**2 pixels, sides rounded down to
    the step; the bucketed examples are exactly those shapes and record the untouched original size."""
    from hfvision.training import DreamBoothConfig
    from hfvision.training.dreambooth.data import build_bucketed_data, list_images, load_records

    config = DreamBoothConfig(
        pretrained_model_name_or_path="sd15",
        instance_data_dir=str(shaped_dir),
        resolution=48,
        use_aspect_ratio_buckets=True,
        bucket_no_upscale=True,
        bucket_reso_steps=16,
        min_bucket_reso=32,
        max_bucket_reso=96,
    )
    paths = list_images(shaped_dir)
    records = load_records(paths, ["x"] * len(paths), None)
    sizes = [r.original_size for r in records]
    dataset, sampler = build_bucketed_data(config, records, [])
    for index, size in enumerate(sizes):
        height, width = dataset.buckets[dataset.bucket_of[index]]
        assert height <= size[0] and width <= size[1] and height % 16 == 0 and width % 16 == 0
        assert height * width <= 48 * 48
        example = dataset[(index, None, 7)]["instance"]
        assert example["pixel_values"].shape[-2:] == (height, width) and example["original_size"] == size
    assert sorted(i for batch in sampler.epoch_batches(0) for i, _, _ in batch) == list(range(len(sizes)))


@pytest.mark.slow
def test_bucket_resume_is_bit_identical(tiny_kwargs, shaped_dir, assert_resume_matches_straight_run):
    """Straight 2N steps vs N steps, SIGKILL after step N+1, resume: same losses and bit-identical weights."""
    kwargs = tiny_kwargs(
        instance_data_dir=str(shaped_dir),
        **SHAPED_BUCKETS,
        max_train_steps=2 * N,
        checkpointing_steps=N,
        resolution=48,
        random_flip=True,
        caption_dropout=0.5,
    )
    assert_resume_matches_straight_run(kwargs, N)


# --- several subjects, repeats, caption dropout ----------------------------------------------------------------


def test_concepts_repeats_and_caption_dropout_in_one_run(tiny_kwargs, instance_dir, shaped_dir, class_dir, tmp_path):
    """Two subjects with prior preservation: each instance image is paired with its own subject's class images, the
    photos are repeated, every instance caption is dropped (class captions are not), and the saved pipeline knows
    both tokens (stock diffusers still loads it)."""
    import json

    from diffusers import DiffusionPipeline

    from hfvision.pipelines.dreambooth import DreamBoothPipeline

    other_class = tmp_path / "other-class"
    other_class.mkdir()
    from hfvision.testing import sample_image

    sample_image("coffee").resize((64, 64)).save(other_class / "cup.png")
    concepts = [
        {
            "instance_prompt": "a photo of zwx person",
            "instance_data_dir": str(instance_dir),
            "instance_token": "zwx",
            "class_prompt": "a photo of a person",
            "class_data_dir": str(class_dir),
            "num_class_images": 2,
        },
        {
            "instance_prompt": "a photo of ohwx cup",
            "instance_data_dir": str(shaped_dir),
            "instance_token": "ohwx",
            "class_prompt": "a photo of a cup",
            "class_data_dir": str(other_class),
            "num_class_images": 1,
            "repeats": 2,
        },
    ]
    path = tmp_path / "concepts.json"
    path.write_text(json.dumps(concepts))
    kwargs = tiny_kwargs(
        concepts=path,
        repeats=2,
        caption_dropout=1.0,
        train_batch_size=1,
        max_train_steps=6,
        resolution=32,
    )
    trainer, result = _train_recording(kwargs)
    dataset = trainer.dataset
    assert len(dataset.instance) == 2 * (3 + 2 * 4)  # --repeats 2 x (3 photos + 4 photos x repeats 2)
    assert trainer.micro_batches_per_epoch == len(dataset.instance)
    n_inst = len(dataset.instance)
    for batch in trainer.seen:
        (inst, cls), n = batch["image_ids"], batch["num_instance"]
        assert n == 1
        assert trainer.instance_groups[inst] == trainer.class_groups[cls - n_inst]  # same subject
    captions = [dataset[(i, s)]["instance"]["caption"] for i, s in zip(range(4), range(4))]
    assert captions == [""] * 4  # dropped with probability 1
    assert dataset[(0, 1)]["class"]["caption"] == "a photo of a person"
    index = json.loads((result.output_dir / "model_index.json").read_text())
    assert index["instance_token"] == "zwx" and index["class_noun"] == "person"
    assert index["concepts"] == [
        {"token": "zwx", "class_noun": "person", "prompt": "a photo of zwx person"},
        {"token": "ohwx", "class_noun": "cup", "prompt": "a photo of ohwx cup"},
    ]
    assert DreamBoothPipeline.from_pretrained(result.output_dir).config.instance_token == "zwx"
    assert type(DiffusionPipeline.from_pretrained(result.output_dir)).__name__ == "StableDiffusionPipeline"


def test_caption_dropout_is_seeded_and_leaves_crops_alone(instance_dir):
    """Dropout draws from the item's seeded generator after its crop, so the crops equal a run without dropout and
    the dropped set is a pure function of the seeds."""
    from hfvision.training.dreambooth.data import DreamBoothDataset, list_images, load_records

    paths = list_images(instance_dir)
    records = load_records(paths, ["a photo of sks person"] * len(paths), 48)
    plain = DreamBoothDataset(records, [], 48)
    half = DreamBoothDataset(records, [], 48, caption_dropout=0.5)
    keys = [(i % 3, seed) for i, seed in enumerate(range(100, 140))]
    dropped = [half[k]["instance"]["caption"] == "" for k in keys]
    assert dropped == [half[k]["instance"]["caption"] == "" for k in keys]  # reproducible
    assert 0 < sum(dropped) < len(keys)
    for k in keys:
        assert half[k]["instance"]["crop_top_left"] == plain[k]["instance"]["crop_top_left"]
        assert plain[k]["instance"]["caption"] == "a photo of sks person"


@pytest.mark.slow
def test_two_processes_train_with_buckets(tiny_kwargs, shaped_dir, tmp_path, cli_flags, launch_two_processes):
    """accelerate's BatchSamplerShard hands whole bucket batches to each of two CPU processes (gloo)."""
    from pathlib import Path

    kwargs = tiny_kwargs(
        instance_data_dir=str(shaped_dir),
        **SHAPED_BUCKETS,
        resolution=48,
        max_train_steps=2,
        checkpointing_steps=2,
    )
    launch_two_processes(cli_flags(kwargs), tmp_path)
    import json

    state = json.loads((Path(kwargs["output_dir"]) / "checkpoint-2" / "trainer_state.json").read_text())
    assert state["num_processes"] == 2 and state["global_step"] == 2
