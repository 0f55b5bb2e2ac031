"""``classify_dataset``: classify a ``datasets`` dataset into sharded parquet, data-parallel and resumable.

The rows are cut into shards of ``shard_size`` consecutive rows; shard ``k`` is written to
``part-{k:05d}.parquet`` (columns ``index``, ``id``, ``labels``, ``scores``, ``error``) atomically, so a file that
exists is complete. A rerun with the same ``output_dir`` skips the shards already written: after a kill, the
output has every row exactly once (no duplicates, no gaps). Under ``accelerate launch`` the pending shards are split
between processes with accelerate's ``PartialState.split_between_processes`` (streaming datasets, whose length is
unknown, take every ``num_processes``-th shard). ``_run.json`` records the settings; resuming with different ones
is refused.

Sources: a Hub dataset id, a local folder (an ``imagefolder``, parquet files, or a ``save_to_disk`` dataset) or a
parquet file. ``streaming=True`` reads the dataset as it goes instead of preparing it first (large Hub datasets).

>>> summary = classify_dataset("user/faces", model="rizvandwiki/gender-classification", output_dir="preds")  # doctest: +SKIP
>>> read_predictions("preds").num_rows  # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..utils.io import atomic_write
from ..utils.logging import get_logger

logger = get_logger(__name__)

RUN_FILE = "_run.json"
SHARD_PATTERN = re.compile(r"^part-(\d{5,})\.parquet$")
#: settings that must match to resume into an existing output_dir
RESUME_KEYS = ("dataset", "split", "image_column", "id_column", "shard_size", "task", "model", "top_k", "num_rows")


def shard_file(index: int) -> str:
    return f"part-{index:05d}.parquet"


def finished_shards(output_dir: str | os.PathLike) -> set[int]:
    """Indices of the shard files present in ``output_dir`` (each one complete: they are written atomically)."""
    path = Path(output_dir)
    if not path.is_dir():
        return set()
    return {int(m.group(1)) for name in os.listdir(path) if (m := SHARD_PATTERN.match(name))}


def pending_shards(num_rows: int, shard_size: int, done: set[int]) -> list[int]:
    """Shards of a ``num_rows`` dataset not in ``done``, in order.

    >>> pending_shards(10, 4, {1})
    [0, 2]
    """
    return [k for k in range(-(-num_rows // shard_size)) if k not in done]


def _schema():
    import pyarrow as pa

    return pa.schema(
        [
            ("index", pa.int64()),
            ("id", pa.string()),
            ("labels", pa.list_(pa.string())),
            ("scores", pa.list_(pa.float64())),
            ("error", pa.string()),
        ]
    )


def write_shard(output_dir: str | os.PathLike, index: int, records: list[dict]) -> Path:
    """Write one shard's records as ``part-{index}.parquet``, atomically (a temporary sibling, then a rename)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pylist(records, schema=_schema())
    path = Path(output_dir) / shard_file(index)
    with atomic_write(path, "wb") as f:
        pq.write_table(table, f)
    return path


def read_predictions(output_dir: str | os.PathLike):
    """All shards of ``output_dir`` as one ``pyarrow.Table`` sorted by ``index``; raises if a row is missing or
    duplicated (an incomplete run: rerun ``classify_dataset`` with the same arguments to finish it)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    shards = sorted(finished_shards(output_dir))
    if not shards:
        raise FileNotFoundError(f"{output_dir} holds no prediction shards (part-*.parquet)")
    table = pa.concat_tables([pq.read_table(Path(output_dir) / shard_file(k)) for k in shards])
    table = table.sort_by("index")
    indices = table.column("index").to_pylist()
    run_file = Path(output_dir) / RUN_FILE
    expected = json.loads(run_file.read_text(encoding="utf-8")).get("num_rows") if run_file.is_file() else None
    expected = expected if expected is not None else max(indices) + 1  # streaming runs: length known at the end
    if indices != list(range(expected)):
        counts = Counter(indices)
        dupes = sorted(i for i, n in counts.items() if n > 1)
        gaps = sorted(set(range(expected)) - counts.keys())
        raise RuntimeError(
            f"{output_dir}: rows duplicated {dupes[:5]} / missing {gaps[:5]}; rerun classify_dataset to finish it"
        )
    return table


@dataclass
class DatasetClassification:
    """What :func:`classify_dataset` did in this process."""

    output_dir: Path
    num_rows: int | None
    num_shards: int | None
    written: list[int] = field(default_factory=list)
    skipped: int = 0
    errors: int = 0


def _is_saved_dataset(path: Path) -> bool:
    return (path / "dataset_dict.json").is_file() or (path / "state.json").is_file()


def _pick_split(loaded, source: str, split: str | None):
    from datasets import DatasetDict, IterableDatasetDict

    if not isinstance(loaded, (DatasetDict, IterableDatasetDict)):
        return loaded, split
    names = list(loaded)
    if split is None:
        if len(names) != 1:
            raise ValueError(f"{source} has splits {', '.join(names)}; pass --split with one of them")
        split = names[0]
    if split not in loaded:
        raise ValueError(f"split={split!r} is not in {source}; it has {', '.join(names)}")
    return loaded[split], split


def load_image_dataset(source: str | os.PathLike, split: str | None = None, streaming: bool = False, **kwargs):
    """Load ``source`` (Hub id, local imagefolder / parquet folder / ``save_to_disk`` folder, or parquet file)
    and return ``(dataset, split)`` for one split (the only one when ``split`` is not given)."""
    import datasets

    text = os.fspath(source)
    path = Path(text)
    if path.is_dir():
        if _is_saved_dataset(path):
            loaded = datasets.load_from_disk(text)
            if streaming:
                loaded = loaded.to_iterable_dataset() if isinstance(loaded, datasets.Dataset) else loaded
        elif parquet := sorted(str(p) for p in path.rglob("*.parquet")):
            loaded = datasets.load_dataset("parquet", data_files=parquet, streaming=streaming, **kwargs)
        else:
            loaded = datasets.load_dataset("imagefolder", data_dir=text, streaming=streaming, **kwargs)
    elif path.is_file():
        if path.suffix != ".parquet":
            raise ValueError(f"{text}: a dataset file must be .parquet; pass a folder or a Hub dataset id otherwise")
        loaded = datasets.load_dataset("parquet", data_files=[text], streaming=streaming, **kwargs)
    elif text.startswith((".", "/", "~")) or text.count("/") > 1:
        raise FileNotFoundError(f"{text}: no such dataset folder or file")
    else:
        loaded = datasets.load_dataset(text, split=split, streaming=streaming, **kwargs)
    return _pick_split(loaded, text, split)


def image_column_of(dataset, image_column: str | None, source: str) -> str:
    """The column holding the images: ``image_column`` if given (checked), else the dataset's only Image column."""
    import datasets

    features = dataset.features or {}
    images = [name for name, feature in features.items() if isinstance(feature, datasets.Image)]
    if image_column is not None:
        if image_column not in features:
            raise ValueError(f"--image-column {image_column!r} is not a column of {source} ({', '.join(features)})")
        if not isinstance(features[image_column], (datasets.Image, datasets.Value)):
            raise ValueError(f"--image-column {image_column!r} holds {features[image_column]}, not images or paths")
        return image_column
    if len(images) != 1:
        found = f"image columns {', '.join(images)}" if images else f"no image column (columns: {', '.join(features)})"
        raise ValueError(f"{source} has {found}; pass --image-column")
    return images[0]


def _decode(value):
    """A row's image cell (``{"bytes", "path"}`` undecoded, a path, or bytes) -> (PIL image, None) or (None, error)."""
    from ..data.image_io import ImageLoadError, load_image

    if isinstance(value, dict):
        value = value.get("bytes") or value.get("path")
    if value is None:
        return None, "empty: no image in this row"
    try:
        return load_image(value), None
    except ImageLoadError as err:
        return None, f"{err.reason}: {err.detail}"


def _row_id(row: dict, index: int, image_column: str, id_column: str | None) -> str:
    if id_column is not None:
        return str(row[id_column])
    cell = row[image_column]
    if isinstance(cell, dict) and cell.get("path"):
        return str(cell["path"])
    return cell if isinstance(cell, str) else str(index)


def _classify_rows(pipe, rows: list[tuple[int, dict]], decoded, image_column, id_column, batch_size, call_kwargs):
    """Records for ``(index, row)`` pairs whose images ``decoded`` yields, classified in one pipeline call."""
    decoded = list(decoded)
    good = [image for image, _ in decoded if image is not None]
    results = iter(pipe(good, batch_size=batch_size, **call_kwargs) if good else [])
    records = []
    for (index, row), (image, error) in zip(rows, decoded):
        record = {"index": index, "id": _row_id(row, index, image_column, id_column), "error": error}
        if image is None:
            logger.warning("row %d: %s", index, error)
            record.update(labels=None, scores=None)
        else:
            result = next(results)
            record.update(labels=[r["label"] for r in result], scores=[float(r["score"]) for r in result])
        records.append(record)
    return records


def _check_run(output_dir: Path, settings: dict) -> None:
    """Refuse to resume into ``output_dir`` with other settings; record them on the first run."""
    run_file = output_dir / RUN_FILE
    if run_file.is_file():
        previous = json.loads(run_file.read_text(encoding="utf-8"))
        changed = [k for k in RESUME_KEYS if previous.get(k) != settings.get(k)]
        if changed:
            k = changed[0]
            raise ValueError(
                f"{output_dir} holds a run with {k}={previous.get(k)!r} (now {settings.get(k)!r}); resume with the "
                "same settings or use a new --output-dir"
            )
        return
    with atomic_write(run_file, "w") as f:
        json.dump(settings, f, indent=2)


def _remove_partial_files(output_dir: Path) -> None:
    """Temporary files a killed process left behind (``atomic_write``'s ``.part-*.tmp``)."""
    for name in os.listdir(output_dir):
        if name.startswith(".part-") and name.endswith(".tmp"):
            os.unlink(output_dir / name)


def classify_dataset(
    dataset: str | os.PathLike,
    task: str = "gender-classification",
    model: str | os.PathLike | None = None,
    *,
    output_dir: str | os.PathLike,
    split: str | None = None,
    image_column: str | None = None,
    id_column: str | None = None,
    streaming: bool = False,
    shard_size: int = 1000,
    batch_size: int | str = 8,
    top_k: int | None = None,
    device: str | None = None,
    progress: bool = True,
    pipe: Any = None,
    **pipeline_kwargs: Any,
) -> DatasetClassification:
    """Classify every image of a dataset split into sharded parquet in ``output_dir``; resumable, data-parallel.

    Args:
        dataset (`str` or `os.PathLike`): Hub dataset id, local folder (imagefolder, parquet files or a
            ``save_to_disk`` dataset) or parquet file.
        task (`str`, *optional*, defaults to `"gender-classification"`): pipeline task.
        model (`str`, *optional*): Hub id or folder (the task's default otherwise).
        output_dir (`str` or `os.PathLike`): where ``part-*.parquet`` and ``_run.json`` go; rerunning with the
            same arguments finishes an interrupted run.
        split (`str`, *optional*): the split (required when the dataset has several).
        image_column (`str`, *optional*): the column holding images (or file paths); default: the only
            ``Image`` column.
        id_column (`str`, *optional*): a column to copy into ``id``; default: the image's file path, or the row
            index.
        streaming (`bool`, *optional*, defaults to `False`): read the dataset as a stream (no preparation pass).
        shard_size (`int`, *optional*, defaults to 1000): rows per output file, the unit of resumption.
        batch_size (`int` or `"auto"`, *optional*, defaults to 8): images per forward pass.
        top_k (`int`, *optional*): labels per image (the pipeline's default otherwise).
        device (`str`, *optional*): defaults to the process's accelerate device with several processes, CPU
            otherwise.
        progress (`bool`, *optional*, defaults to `True`): tqdm progress bar (main process only).
        pipe (*optional*): an already-built pipeline to use instead of building one.
        pipeline_kwargs: passed to :func:`hfvision.pipeline`.

    Returns:
        a :class:`DatasetClassification` (what this process wrote). Read the output with :func:`read_predictions`
        or ``datasets.load_dataset("parquet", data_dir=output_dir)``.
    """
    from accelerate import PartialState
    from tqdm.auto import tqdm

    from .classify import _wants_cpu

    if isinstance(shard_size, bool) or not isinstance(shard_size, int) or shard_size < 1:
        raise ValueError(f"shard_size={shard_size!r} must be a positive integer")
    output_dir = Path(output_dir)
    if output_dir.exists() and not output_dir.is_dir():
        raise NotADirectoryError(f"--output-dir {output_dir} is a file; pass a folder")
    state = PartialState(cpu=_wants_cpu(device))
    with state.main_process_first():  # one process prepares (downloads, builds the Arrow cache); the others reuse it
        data, split = load_image_dataset(dataset, split, streaming)
    column = image_column_of(data, image_column, os.fspath(dataset))
    if id_column is not None and id_column not in (data.features or {}):
        raise ValueError(f"--id-column {id_column!r} is not a column of {dataset} ({', '.join(data.features)})")
    import datasets

    if isinstance(data.features[column], datasets.Image):
        data = data.cast_column(column, datasets.Image(decode=False))  # decode here: a bad image is a row error
    num_rows = None if streaming else len(data)
    settings = {
        "dataset": os.fspath(dataset),
        "split": split,
        "image_column": column,
        "id_column": id_column,
        "shard_size": shard_size,
        "task": task,
        "model": None if model is None else os.fspath(model),
        "top_k": top_k,
        "num_rows": num_rows,
    }
    if state.is_main_process:
        output_dir.mkdir(parents=True, exist_ok=True)
        _check_run(output_dir, settings)
        _remove_partial_files(output_dir)
    state.wait_for_everyone()
    done = finished_shards(output_dir)  # listed by every process before any of them writes
    state.wait_for_everyone()

    if pipe is None:
        from ..pipelines.factory import pipeline

        if device is None:
            device = str(state.device) if state.num_processes > 1 else "cpu"
        with state.main_process_first():
            pipe = pipeline(task, model, device=device, **pipeline_kwargs)
    call_kwargs = {} if top_k is None else {"top_k": top_k}
    summary = DatasetClassification(output_dir, num_rows, None if streaming else -(-num_rows // shard_size))
    show = progress and state.is_local_main_process

    def finish(k: int, rows: list, decoded) -> None:
        records = _classify_rows(pipe, rows, decoded, column, id_column, batch_size, call_kwargs)
        write_shard(output_dir, k, records)
        summary.written.append(k)
        summary.errors += sum(r["error"] is not None for r in records)

    def my_shards():
        """``(shard, [(row index, row), ...])`` for this process's pending shards, in order."""
        if not streaming:
            todo = pending_shards(num_rows, shard_size, done)
            summary.skipped = summary.num_shards - len(todo)
            with state.split_between_processes(todo) as mine:
                logger.info(
                    "process %d/%d: %d of %d pending shards (%d already written)",
                    state.process_index + 1,
                    state.num_processes,
                    len(mine),
                    len(todo),
                    summary.skipped,
                )
                for k in tqdm(mine, desc="classify", unit="shard", disable=not show):
                    start, stop = k * shard_size, min(num_rows, (k + 1) * shard_size)
                    yield k, [(start + i, row) for i, row in enumerate(data.select(range(start, stop)))]
            return
        # the length is unknown: shard k belongs to process k % num_processes; every process reads the stream
        # (rows of other shards are not decoded)
        current, rows, count = None, [], 0
        for index, row in enumerate(tqdm(data, desc="classify", unit="row", disable=not show)):
            k, count = index // shard_size, index + 1
            if k != current:
                if rows:
                    yield current, rows
                current, rows = k, []
            if k not in done and k % state.num_processes == state.process_index:
                rows.append((index, row))
        if rows:
            yield current, rows
        summary.num_rows, summary.num_shards, summary.skipped = count, -(-count // shard_size), len(done)

    with ThreadPoolExecutor(max_workers=2) as pool:
        ahead = None  # the next shard's images decode on the pool while the model runs on this one
        for k, rows in my_shards():
            decoded = pool.map(lambda pair: _decode(pair[1][column]), rows)  # submitted now, collected in finish
            if ahead is not None:
                finish(*ahead)
            ahead = (k, rows, decoded)
        if ahead is not None:
            finish(*ahead)
    state.wait_for_everyone()
    logger.info(
        "process %d/%d wrote %d shard(s) to %s",
        state.process_index + 1,
        state.num_processes,
        len(summary.written),
        output_dir,
    )
    return summary
