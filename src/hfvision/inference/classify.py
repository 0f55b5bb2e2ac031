"""``classify_files``: classify image files with a progress bar, report bad files, write JSONL.

Under ``accelerate launch --num_processes K`` (CPU with gloo, or GPUs) each process classifies a contiguous
shard of the inputs (accelerate's ``PartialState.split_between_processes``); the records are gathered to every
process in process order, and the main process writes the output file, which holds every input exactly once, in
input order.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ..data.image_io import ImageLoadError, load_image
from ..utils.io import atomic_write
from ..utils.logging import get_logger
from .inputs import collect_inputs

logger = get_logger(__name__)


def _load(path: str):
    try:
        return load_image(path), None
    except ImageLoadError as err:
        return None, err


def _chunks(items: list, size: int) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _classify_shard(
    pipe, entries: list[tuple[int, str]], batch_size, call_kwargs: dict, progress: bool, strict: bool = False
):
    """``(position, record)`` pairs for this process's files; images are decoded by two threads ahead of the model.

    A file that is not a usable image is skipped with a warning (its record holds the reason), or with ``strict``
    raises its `ImageLoadError` before any model call of its group."""
    from tqdm.auto import tqdm

    faces = bool(call_kwargs.get("faces"))
    chunk = max(32, 4 * batch_size) if isinstance(batch_size, int) else 64
    out: list[tuple[int, dict]] = []
    with (
        ThreadPoolExecutor(max_workers=2) as pool,
        tqdm(total=len(entries), desc="classify", unit="img", disable=None if progress else True) as bar,
    ):
        loaded = pool.map(lambda group: [(*e, *_load(e[1])) for e in group], _chunks(entries, chunk))
        for group in loaded:
            if strict:
                for _, _, _, error in group:
                    if error is not None:
                        raise error
            good = [(pos, path, image) for pos, path, image, _ in group if image is not None]
            results = pipe([image for _, _, image in good], batch_size=batch_size, **call_kwargs) if good else []
            by_position = {pos: result for (pos, _, _), result in zip(good, results)}
            for pos, path, _, error in group:
                if error is not None:
                    reason = f"{error.reason}: {error.detail}"
                    logger.warning("skipping %s: %s", path, reason)
                    out.append((pos, {"file": path, "error": reason}))
                else:
                    out.append((pos, {"file": path, "faces" if faces else "predictions": by_position[pos]}))
            bar.update(len(group))
    return out


def _wants_cpu(device) -> bool:
    if device is not None:
        return str(device).startswith("cpu")
    import torch

    accelerator = getattr(torch, "accelerator", None)
    return not (accelerator.is_available() if accelerator is not None else torch.cuda.is_available())


def write_jsonl(records: Iterable[dict], path: str | os.PathLike) -> None:
    """One JSON object per line, written atomically (a crash never leaves half a file)."""
    with atomic_write(path, "w") as f:
        for record in records:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")


def classify_files(
    inputs: str | os.PathLike | Iterable[str | os.PathLike],
    task: str = "gender-classification",
    model: str | os.PathLike | None = None,
    *,
    output: str | os.PathLike | None = None,
    batch_size: int | str = 8,
    top_k: int | None = None,
    faces: bool = False,
    face_margin: float | None = None,
    device: str | None = None,
    progress: bool = True,
    pipe: Any = None,
    strict: bool = False,
    **pipeline_kwargs: Any,
) -> list[dict]:
    """Classify every image in ``inputs``; returns one record per input, in input order.

    A record is ``{"file", "predictions": [{"label", "score"}, ...]}``, ``{"file", "faces": [...]}`` with
    ``faces=True``, or ``{"file", "error": "<reason>: <detail>"}`` for a file that is not a usable image (the run
    continues). Under ``accelerate launch`` the inputs are split across processes and merged back in order.

    Args:
        inputs: folder(s), glob(s) or file(s); see :func:`hfvision.inference.collect_inputs`.
        task (`str`, *optional*, defaults to `"gender-classification"`): pipeline task.
        model (`str`, *optional*): Hub id or folder (the task's default otherwise).
        output (`str` or `os.PathLike`, *optional*): JSONL file written by the main process.
        batch_size (`int` or `"auto"`, *optional*, defaults to 8): images per forward pass.
        top_k (`int`, *optional*): labels per image (the pipeline's default otherwise).
        faces (`bool`, *optional*, defaults to `False`): face-first mode, one result per detected face.
        face_margin (`float`, *optional*): context around each face (fraction of its size).
        device (`str`, *optional*): defaults to the process's accelerate device when launched with several
            processes, CPU otherwise.
        progress (`bool`, *optional*, defaults to `True`): tqdm progress bar (main process, terminals only).
        pipe (*optional*): an already-built pipeline to use instead of building one.
        strict (`bool`, *optional*, defaults to `False`): raise the `ImageLoadError` of the first unusable file
            instead of skipping it (with a warning and an ``"error"`` record).
        pipeline_kwargs: passed to :func:`hfvision.pipeline` (``revision``, ``verify``, ``allow_pickle``, ...).

    >>> records = classify_files("photos/", model="rizvandwiki/gender-classification", output="preds.jsonl")
    >>> records[0]
    {'file': 'photos/a.jpg', 'predictions': [{'label': 'female', 'score': 0.93}, {'label': 'male', 'score': 0.07}]}
    """
    from accelerate import PartialState

    files = collect_inputs(inputs)
    # CPU processes (gloo) when asked, or when there is no accelerator: accelerate only picks MULTI_CPU with cpu=True
    state = PartialState(cpu=_wants_cpu(device))
    count = state.num_processes
    if pipe is None:
        from ..pipelines.factory import pipeline

        if device is None:
            device = str(state.device) if count > 1 else "cpu"
        with state.main_process_first():  # one process downloads (and verifies) while the others wait
            pipe = pipeline(task, model, device=device, **pipeline_kwargs)
    call_kwargs = {"top_k": top_k, "face_margin": face_margin, "faces": faces or None}
    call_kwargs = {k: v for k, v in call_kwargs.items() if v is not None}
    with state.split_between_processes(list(enumerate(files))) as mine:  # contiguous (position, file) pairs
        logger.info("process %d/%d: %d of %d files", state.process_index + 1, count, len(mine), len(files))
        pairs = _classify_shard(pipe, mine, batch_size, call_kwargs, progress and state.is_local_main_process, strict)
    if count > 1:
        from accelerate.utils import gather_object

        pairs = gather_object(pairs)  # every process's pairs, on every process, in process (= input) order
    if [position for position, _ in pairs] != list(range(len(files))):
        raise RuntimeError(
            f"data-parallel merge: the {count} process(es) did not return each of the {len(files)} inputs once, in order"
        )
    records = [record for _, record in pairs]
    if output is not None:
        if state.is_main_process:
            write_jsonl(records, output)
        state.wait_for_everyone()
    return records
