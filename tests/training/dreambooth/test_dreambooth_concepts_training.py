"""Several subjects with prior preservation (``--concepts_list``): each subject's photos are paired with that
subject's own class images (never another's), with and without aspect-ratio buckets; unreadable photos or class
images in a concepts run follow ``bad_images`` (skipped with one warning and a count, or an error at the first)."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import test_dreambooth_buckets_training as bucket_tests

from hfvision.training.dreambooth.data import ImageRecord

_train_recording = bucket_tests._train_recording
shaped_dir = bucket_tests.shaped_dir  # the same portrait/landscape/square photos (a session fixture)


def _records(shapes, caption):
    return [ImageRecord(f"{caption}-{i}.png", caption, np.zeros((*s, 3), np.uint8), s) for i, s in enumerate(shapes)]


def _config(**overrides):
    from hfvision.training import DreamBoothConfig

    values = dict(
        pretrained_model_name_or_path="sd15",
        concepts_list="concepts.json",
        resolution=64,
        use_aspect_ratio_buckets=True,
        bucket_reso_steps=16,
        min_bucket_reso=32,
        max_bucket_reso=128,
        train_batch_size=2,
        with_prior_preservation=True,
    )
    values.update(overrides)
    return DreamBoothConfig(**values)


def test_bucketed_batches_never_borrow_another_subjects_class_images():
    """Subject 0's photos are landscape but its class images portrait, the shape only subject 1's photos use. Class
    images used to be bucketed among all subjects' buckets, which left subject 0's landscape batches with no class
    image of their own key and paired them with any subject's. Now every batch is one subject and one shape."""
    from hfvision.training.dreambooth.data import build_bucketed_data

    landscape, portrait, square = (48, 96), (96, 48), (64, 64)
    instance = _records([landscape] * 3, "zwx") + _records([portrait] * 2 + [square] * 2, "ohwx")
    class_records = _records([portrait] * 2, "a dog") + _records([square, portrait], "a cup")
    instance_groups, class_groups = [0] * 3 + [1] * 4, [0, 0, 1, 1]
    dataset, sampler = build_bucketed_data(_config(), instance, class_records, instance_groups, class_groups)
    n_inst = len(instance)
    assert {dataset.bucket_of[n_inst + i] for i in (0, 1)} == {dataset.bucket_of[0]}  # subject 0's own bucket
    seen_pairs = set()
    for epoch in range(4):
        for batch in sampler.epoch_batches(epoch):
            items = [dataset[item] for item in batch]
            subjects = {instance_groups[i] for i, _, _ in batch} | {class_groups[c] for _, c, _ in batch}
            assert len(subjects) == 1  # one subject per batch, class half included
            shapes = {tuple(x[k]["pixel_values"].shape[-2:]) for x in items for k in ("instance", "class")}
            assert len(shapes) == 1  # and one shape
            captions = {x["class"]["caption"] for x in items}
            assert captions == {"a dog" if subjects == {0} else "a cup"}
            seen_pairs |= {(i, c) for i, c, _ in batch}
    assert {c for i, c in seen_pairs if i >= 3} == {2, 3}  # subject 1 draws both its class images (any bucket)


def test_subject_bucketed_sampler_resumes_mid_epoch_exactly():
    """The per-subject class pools are drawn from the (seed, epoch) generator like the rest: a sampler restored from
    ``state_dict`` mid-epoch yields exactly the batches (instance, class, seed) an uninterrupted one does."""
    from hfvision.training.dreambooth.data import build_bucketed_data

    instance = _records([(48, 96)] * 3, "zwx") + _records([(96, 48)] * 3 + [(64, 64)] * 2, "ohwx")
    class_records = _records([(96, 48), (64, 64)], "a dog") + _records([(64, 64)] * 2, "a cup")
    groups = ([0] * 3 + [1] * 5, [0, 0, 1, 1])
    _, straight = build_bucketed_data(_config(train_batch_size=1), instance, class_records, *groups)
    expected = [b for _ in range(2) for b in straight]  # two epochs
    _, first = build_bucketed_data(_config(train_batch_size=1), instance, class_records, *groups)
    seen = [b for _, b in zip(range(5), first)]
    _, resumed = build_bucketed_data(_config(train_batch_size=1), instance, class_records, *groups)
    resumed.load_state_dict(first.state_dict())
    seen += list(resumed) + list(resumed)
    assert seen == expected and len(expected) == 16


def test_unbucketed_pairs_and_a_subject_without_class_images():
    from hfvision.training.dreambooth.data import DreamBoothDataset, pair_by_group

    instance = _records([(64, 64)] * 3, "zwx") + _records([(64, 64)] * 2, "ohwx")
    class_records = _records([(64, 64)] * 2, "a cup") + _records([(64, 64)] * 3, "a dog")
    instance_groups, class_groups = [0, 0, 0, 1, 1], [1, 1, 0, 0, 0]
    dataset = DreamBoothDataset(instance, class_records, 64)
    dataset.class_pairs = pair_by_group(instance_groups, class_groups)
    expected = {"zwx": "a dog", "ohwx": "a cup"}
    for index in range(3 * len(dataset)):
        item = dataset[(index % len(dataset), index)]
        assert item["class"]["caption"] == expected[item["instance"]["caption"]]
    with pytest.raises(ValueError, match="concept 1 has no readable class images"):
        pair_by_group([0, 1], [0, 0])


def _bad_image_concepts(tmp_path, instance_dir, shaped_dir, class_dir):
    """Two subjects (person / cup) with different class prompts; one corrupt photo and one corrupt class image."""
    import shutil

    from hfvision.testing import sample_image

    person, cup, cup_class = tmp_path / "person", tmp_path / "cup", tmp_path / "cup-class"
    shutil.copytree(instance_dir, person)
    shutil.copytree(shaped_dir, cup)
    (cup / "broken.png").write_bytes(b"\x89PNG not really")
    cup_class.mkdir()
    sample_image("coffee").resize((64, 48)).save(cup_class / "mug.png")
    sample_image("rocket").resize((48, 64)).save(cup_class / "cup.png")
    (cup_class / "empty.jpg").write_bytes(b"")
    concepts = [
        {"instance_prompt": "a photo of zwx person", "instance_data_dir": "person", "instance_token": "zwx"}
        | {"class_prompt": "a photo of a person", "class_data_dir": str(class_dir), "num_class_images": 2},
        {"instance_prompt": "a photo of ohwx cup", "instance_data_dir": "cup", "instance_token": "ohwx"}
        | {"class_prompt": "a photo of a cup", "class_data_dir": "cup-class", "num_class_images": 3},
    ]
    path = tmp_path / "concepts.json"
    path.write_text(json.dumps(concepts))
    return path


@pytest.mark.parametrize("buckets", [True, False], ids=["buckets", "square"])
def test_two_subjects_train_with_their_own_class_images_and_bad_files_skipped(
    buckets, tiny_kwargs, instance_dir, shaped_dir, class_dir, tmp_path, caplog
):
    path = _bad_image_concepts(tmp_path, instance_dir, shaped_dir, class_dir)
    kwargs = tiny_kwargs(
        concepts=path,
        resolution=48,
        max_train_steps=5,
        **(bucket_tests.SHAPED_BUCKETS if buckets else {}),
    )
    with caplog.at_level(logging.WARNING, logger="hfvision"):
        trainer, result = _train_recording(kwargs)
    assert result.global_step == 5 and np.isfinite(result.final_loss)
    warnings = [r.getMessage() for r in caplog.records if "unreadable" in r.getMessage()]
    assert len(warnings) == 2  # one for all photos, one per class folder that had a bad file
    assert "skipped 1 unreadable image(s) of 8" in warnings[0] and "broken.png" in warnings[0]
    assert "skipped 1 unreadable image(s) of 3" in warnings[1] and "empty.jpg" in warnings[1]
    dataset, n_inst = trainer.dataset, len(trainer.dataset.instance)
    assert n_inst == 3 + 4 and len(dataset.class_records) == 2 + 2  # the bad files are gone, nothing else
    assert trainer.class_groups == [0, 0, 1, 1]
    class_prompt = {0: "a photo of a person", 1: "a photo of a cup"}
    for record, group in zip(dataset.class_records, trainer.class_groups):
        assert record.caption == class_prompt[group]  # groups stay aligned with the records after the skip
    for batch in trainer.seen:
        ids, n = batch["image_ids"], batch["num_instance"]
        assert len(ids) == 2 * n
        for inst, cls in zip(ids[:n], ids[n:]):  # each instance example with a class example of its subject
            assert trainer.instance_groups[inst] == trainer.class_groups[cls - n_inst]
        if buckets:  # and a batch is one subject
            assert len({trainer.instance_groups[i] for i in ids[:n]}) == 1
    assert {trainer.instance_groups[i] for b in trainer.seen for i in b["image_ids"][: b["num_instance"]]} == {0, 1}


def test_bad_images_error_stops_a_concepts_run_at_the_first(
    tiny_kwargs, instance_dir, shaped_dir, class_dir, tmp_path
):
    from hfvision.data import ImageLoadError
    from hfvision.training import DreamBoothConfig, DreamBoothTrainer

    path = _bad_image_concepts(tmp_path, instance_dir, shaped_dir, class_dir)
    kwargs = tiny_kwargs(concepts=path, bad_images="error")
    trainer = DreamBoothTrainer(DreamBoothConfig(**kwargs))
    with pytest.raises(ImageLoadError, match="broken.png"):
        trainer.train()
    assert trainer.components == {} and trainer.denoiser is None  # stopped before the base model loaded


def test_a_subject_with_no_readable_photo_is_named(tmp_path):
    from hfvision.testing import sample_image
    from hfvision.training.dreambooth.concepts import load_concepts_list
    from hfvision.training.dreambooth.data import concept_records

    good, bad = tmp_path / "good", tmp_path / "bad"
    good.mkdir(), bad.mkdir()
    sample_image("coffee").resize((32, 32)).save(good / "a.png")
    (bad / "zero.png").write_bytes(b"")
    path = tmp_path / "concepts.json"
    path.write_text(json.dumps([{"instance_prompt": "zwx", "instance_data_dir": d} for d in ("good", "bad")]))
    concepts = load_concepts_list(path)
    with pytest.raises(ValueError, match=f"concept 1: none of the images in instance_data_dir {bad} could be read"):
        concept_records(concepts, False, lambda p: p, 32)
    records, groups = concept_records(concepts[:1] * 2, False, lambda p: p, 32, repeats=2)
    assert groups == [0, 0, 1, 1] and records[0] is records[3]  # decoded once, repeated
