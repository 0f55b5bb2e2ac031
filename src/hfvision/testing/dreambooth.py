"""DreamBooth options for seconds-long CPU runs on the tiny models (the trainer tests, the demo)."""

from __future__ import annotations

import os


def tiny_dreambooth_kwargs(
    base: str | os.PathLike, instance_dir: str | os.PathLike, output_dir: str | os.PathLike, **overrides
) -> dict:
    """[`DreamBoothConfig`] keyword arguments for a tiny run: 64 px, batches of 2 instance + 2 class images (prior
    preservation; class images generated in 2 steps unless ``class_data_dir`` holds some), 4 steps at learning rate
    1e-3, no trackers; ``overrides`` win. A plain dict, so it also crosses to a subprocess as JSON.

    >>> from hfvision.training import DreamBoothConfig
    >>> config = DreamBoothConfig(**tiny_dreambooth_kwargs(save_tiny_sd("sd1"), "photos/", "out"))  # doctest: +SKIP
    """
    kwargs = dict(
        pretrained_model_name_or_path=str(base),
        instance_data_dir=str(instance_dir),
        instance_prompt="a photo of {token} person",
        resolution=64,
        train_batch_size=2,
        with_prior_preservation=True,
        class_prompt="a photo of a person",
        num_class_images=2,
        class_inference_steps=2,
        max_train_steps=4,
        learning_rate=1e-3,
        report_to="none",
        output_dir=str(output_dir),
    )
    kwargs.update(overrides)
    return kwargs
