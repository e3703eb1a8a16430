"""Batch scoring with write-back: a model's predictions for every row of a source, upserted into a table.

A job reads its source in chunks (:mod:`~fedlearn.registry.scoring_sources`), encodes each chunk with
the model's input schema, predicts, and upserts one row per key (key columns, ``prediction``,
optionally ``probability_K`` per class, ``model_version``, ``scored_at``) into a table of the
sink database, together with its progress, in one transaction per chunk
(:mod:`~fedlearn.registry.write_back`). Hence:

- running a job again updates its rows and never duplicates them;
- a job killed at any instant, run again, continues after its last committed chunk and reports
  the rows it skipped; ``restart=True`` ignores that progress;
- a job is the model version, the source and the target together: scoring with a new version
  starts afresh, and its upserts overwrite the older version's rows;
- a chunk that does not fit the schema is refused whole, naming the column and the chunk's first
  key; chunks before it stay committed, so fixing the data and running again continues there.

The sink is the source's own database for SQL sources unless ``write_url`` names another one;
file sources need ``write_url``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from fedlearn.core.checks import check_int
from fedlearn.core.errors import ConfigError
from fedlearn.registry.databases import Database, parse_url
from fedlearn.registry.predictor import Predictor
from fedlearn.registry.scoring_sources import Chunk, open_source
from fedlearn.registry.write_back import (
    DEFAULT_PROGRESS_TABLE,
    JobIdentity,
    Progress,
    SinkLayout,
    WriteBack,
    show_key,
    utc_now,
)

DEFAULT_CHUNK_ROWS = 10_000
MAX_CHUNK_ROWS = 1_000_000
"""A chunk is held in memory and written in one transaction, so its size is bounded."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ScoringJob:
    """What to score and where to write it; see the module docstring for what each run guarantees."""

    source: str
    keys: tuple[str, ...]
    write: str
    query: str | None = None
    table: str | None = None
    write_url: str | None = None
    chunk_rows: int = DEFAULT_CHUNK_ROWS
    probabilities: bool = False
    progress_table: str = DEFAULT_PROGRESS_TABLE
    restart: bool = False

    def __post_init__(self) -> None:
        if not self.keys or len(set(self.keys)) != len(self.keys) or not all(self.keys):
            raise ConfigError(f"`key` must name one or more distinct columns; got {list(self.keys)}")
        check_int("chunk_rows", self.chunk_rows, low=1)
        if self.chunk_rows > MAX_CHUNK_ROWS:
            raise ConfigError(f"`chunk_rows` must be at most {MAX_CHUNK_ROWS:,}; got {self.chunk_rows:,}")
        if "://" not in self.source and self.write_url is None:
            raise ConfigError("a file source needs `write_url`, the database to write the predictions to")

    @property
    def sink_url(self) -> str:
        return self.write_url if self.write_url is not None else self.source


@dataclass(frozen=True, slots=True, kw_only=True)
class ScoringReport:
    """What a run did: rows and chunks scored now, rows skipped as already committed, and time taken."""

    model_version: str
    target: str
    rows_scored: int
    rows_skipped: int
    chunks: int
    seconds: float

    @property
    def rows_per_second(self) -> float:
        return self.rows_scored / self.seconds if self.seconds > 0 else math.inf


def score(
    model: Predictor, job: ScoringJob, *, on_chunk: Callable[[ScoringReport], None] | None = None
) -> ScoringReport:
    """Score every row of ``job.source`` with ``model`` into ``job.write``; ``on_chunk`` sees each commit."""
    if job.probabilities and model.task != "classification":
        raise ConfigError(f"`probabilities` needs a classification model; {model.version} is {model.task}")
    started = time.perf_counter()
    source = open_source(job.source, query=job.query, table=job.table, keys=job.keys, schema=model.schema)
    try:
        sink = WriteBack(Database(parse_url(job.sink_url, what="write_url")), job.write,
                         progress_table=job.progress_table)  # fmt: skip
        try:
            identity = JobIdentity(
                model_version=model.version, source=source.description, target=sink.description, keys=job.keys
            )
            first = progress = sink.begin(identity, restart=job.restart)
            for chunk in source.chunks(progress, job.chunk_rows):
                rows = _predicted_rows(model, chunk, job, where=source.description)
                if progress.chunks_done == first.chunks_done:
                    sink.prepare(_layout(model, chunk, job, rows[0]))
                progress = progress.after(chunk.rows, chunk.keys[-1])
                sink.commit(identity, progress, rows, chunk.keys, check_repeats=not source.key_ordered)
                if on_chunk is not None:
                    on_chunk(_report(identity, sink.description, first, progress, started))
            sink.finish(identity, progress)
            return _report(identity, sink.description, first, progress, started)
        finally:
            sink.db.close()
    finally:
        source.close()


def _report(identity: JobIdentity, target: str, first: Progress, now: Progress, started: float) -> ScoringReport:
    return ScoringReport(
        model_version=identity.model_version, target=target, rows_scored=now.rows_done - first.rows_done,
        rows_skipped=first.rows_done, chunks=now.chunks_done - first.chunks_done,
        seconds=time.perf_counter() - started,
    )  # fmt: skip


def _predicted_rows(model: Predictor, chunk: Chunk, job: ScoringJob, *, where: str) -> list[dict[str, Any]]:
    """One sink row per source row, or an error naming the chunk's first key; nothing is written here."""
    _refuse_repeated_keys(chunk, job.keys)
    where = where if len(where) <= 100 else f"{where[:99]}…"
    features = model.schema.encode(chunk.columns, where=f"{where}, chunk from key {show_key(chunk.keys[0])}")
    predictions = np.asarray(model.predict(features))
    if predictions.shape != (chunk.rows,) or predictions.dtype.kind not in "biuf":
        raise ConfigError(
            f"{model.version} must predict one number per row; it gave {predictions.dtype} {list(predictions.shape)} "
            f"for {chunk.rows} rows"
        )
    columns: dict[str, NDArray[Any]] = {"prediction": predictions}
    if job.probabilities:
        probabilities = np.asarray(model.predict_proba(features), dtype=np.float64)
        if probabilities.ndim != 2 or len(probabilities) != chunk.rows:
            raise ConfigError(f"{model.version} gave probabilities {list(probabilities.shape)} for {chunk.rows} rows")
        columns |= {f"probability_{k}": probabilities[:, k] for k in range(probabilities.shape[1])}
    for name, values in columns.items():
        finite = np.isfinite(values.astype(np.float64))
        if not finite.all():
            key = show_key(chunk.keys[int(np.flatnonzero(~finite)[0])])
            raise ConfigError(f"{model.version} gave a non-finite {name} for the key {key}")
    if model.task == "classification":
        fractional = np.flatnonzero(predictions != np.round(predictions))
        if len(fractional):
            value = predictions[fractional[0]].item()
            raise ConfigError(f"{model.version} is a classifier but predicted {value!r}, not a class index")
        columns["prediction"] = predictions.astype(np.int64)
    stamp = utc_now()
    lists = {name: values.tolist() for name, values in columns.items()}
    rows: list[dict[str, Any]] = [dict(zip(job.keys, key, strict=True)) for key in chunk.keys]
    for i, row in enumerate(rows):
        row.update({name: values[i] for name, values in lists.items()})
        row["model_version"] = model.version
        row["scored_at"] = stamp
    return rows


def _refuse_repeated_keys(chunk: Chunk, keys: tuple[str, ...]) -> None:
    seen: set[tuple[Any, ...]] = set()
    for key in chunk.keys:
        if key in seen:
            raise ConfigError(
                f"the source holds the key {show_key(key)} more than once; the key column(s) {list(keys)} "
                "must identify each row"
            )
        seen.add(key)


def _layout(model: Predictor, chunk: Chunk, job: ScoringJob, first_row: dict[str, Any]) -> SinkLayout:
    n_probabilities = sum(1 for name in first_row if name.startswith("probability_")) if job.probabilities else 0
    return SinkLayout(keys=job.keys, key_types=chunk.key_types(), task=model.task, n_probabilities=n_probabilities)
