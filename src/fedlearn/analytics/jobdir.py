"""A file-backed analytics job, for the command line and for simulations across processes.

Layout::

    JOBDIR/job.json                  the summary spec (columns, target, task, histograms)
    JOBDIR/nodes/<node>.safetensors  one node's summary; metadata: its column types, the
                                     node-local paths it summarised, its privacy threshold

A summary written before summaries carried an R factor loads with the factor unknown, as after a
removal: least squares and PCA then fall back to the moments (see :mod:`.rfactor`).

A node joins by summarising its CSV *on the node* and writing only the summary here: no row is
ever copied into the job directory. Joining again adds a batch; removing subtracts one. The
recorded CSV paths are node-local and let iterative models (logistic regression) re-read the
node's rows in place when the command runs where those paths are visible, as in a simulation.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

from fedlearn.analytics.moments import Moments
from fedlearn.analytics.policy import DEFAULT_POLICY, DisclosurePolicy
from fedlearn.analytics.rfactor import RFactor
from fedlearn.analytics.scan import accumulate
from fedlearn.analytics.sources import DEFAULT_CHUNK_ROWS, TYPES, CsvTable
from fedlearn.analytics.summary import Summary, SummarySpec
from fedlearn.core.codec import decode_with_metadata, encode
from fedlearn.core.errors import ConfigError

JOB_FILE = "job.json"
FACTOR = "moments/factor/"
NODES = "nodes"
_NODE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


@dataclass(frozen=True, slots=True, kw_only=True)
class Source:
    """One CSV a node summarised: where it is on the node, whether it added or removed rows."""

    path: str
    op: str
    rows: int


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeRecord:
    name: str
    summary: Summary
    types: dict[str, str]
    sources: tuple[Source, ...]
    min_rows: int | None


class JobDir:
    """An analytics job stored in a directory; see the module docstring for the layout."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        job_file = self.path / JOB_FILE
        if not job_file.is_file():
            raise ConfigError(f"{str(self.path)!r} is not an analytics job (no {JOB_FILE}); create it first")
        try:
            raw = json.loads(job_file.read_text())
            self.spec = SummarySpec.from_json(json.dumps(raw["spec"]))
        except (ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"{job_file} is not a valid job file: {exc}") from exc

    @classmethod
    def create(cls, path: str | Path, spec: SummarySpec) -> JobDir:
        root = Path(path)
        if (root / JOB_FILE).exists():
            raise ConfigError(f"{str(root)!r} already holds an analytics job; choose another directory")
        (root / NODES).mkdir(parents=True, exist_ok=True)
        _atomic_write(root / JOB_FILE, json.dumps({"format": 1, "spec": json.loads(spec.to_json())}, indent=2).encode())
        return cls(root)

    def _node_file(self, name: str) -> Path:
        if not _NODE_NAME.match(name):
            raise ConfigError(f"`node` must be 1-64 letters, digits, '.', '_' or '-'; got {name!r}")
        return self.path / NODES / f"{name}.safetensors"

    def node_names(self) -> list[str]:
        return sorted(p.stem for p in (self.path / NODES).glob("*.safetensors"))

    def load(self, name: str) -> NodeRecord | None:
        file = self._node_file(name)
        if not file.is_file():
            return None
        params, meta = decode_with_metadata(file.read_bytes())
        if not any(name.startswith(FACTOR) for name in params):  # written before summaries carried R
            moments = Moments.from_params(params.select("moments/"))
            params = params.merged(RFactor.unknown(moments.count, moments.mean).to_params().with_prefix(FACTOR))
        try:
            sources = tuple(Source(**s) for s in json.loads(meta["sources"]))
            types = dict(json.loads(meta["types"]))
            min_rows = int(meta["min_rows"]) if meta.get("min_rows") else None
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"{file} is not a valid node summary: {exc}") from exc
        summary = Summary.from_params(params, self.spec)
        return NodeRecord(name=name, summary=summary, types=types, sources=sources, min_rows=min_rows)

    def records(self) -> list[NodeRecord]:
        return [r for r in (self.load(n) for n in self.node_names()) if r is not None]

    def save(self, record: NodeRecord) -> None:
        meta = {
            "types": json.dumps(record.types),
            "sources": json.dumps([{"path": s.path, "op": s.op, "rows": s.rows} for s in record.sources]),
            "min_rows": "" if record.min_rows is None else str(record.min_rows),
        }
        _atomic_write(self._node_file(record.name), encode(record.summary.to_params(), meta))

    def update(
        self,
        name: str,
        csv: str | Path,
        *,
        remove: bool = False,
        policy: DisclosurePolicy = DEFAULT_POLICY,
        chunk_rows: int = DEFAULT_CHUNK_ROWS,
    ) -> NodeRecord:
        """Run on the node: summarise ``csv`` and add (or remove) it from the node's summary, under ``policy``.

        The batch itself must pass the privacy guard, and so must what remains after a removal
        (unless nothing remains), because the coordinator can difference consecutive summaries.
        A policy without ``min_rows`` keeps the threshold the node joined with. Extrema held by
        removed rows become unknown (see :meth:`Moments.subtract`), and so does the R factor,
        since the node cannot read its remaining rows here: least squares and PCA then fall back
        to the moments (see :func:`~fedlearn.analytics._base.solving_factor`). Histogram cells
        after a removal are the released cells less the removed batch's, suppressed again.
        """
        existing = self.load(name)
        if existing is None and remove:
            raise ConfigError(f"node {name!r} has not joined, so it has no rows to remove")
        if policy.min_rows is None and existing is not None:
            policy = replace(policy, min_rows=existing.min_rows)
        table = CsvTable(csv)
        types = dict(table.schema())
        policy.check_request(self.spec, types)
        delta = policy.release(accumulate(table, self.spec, chunk_rows=chunk_rows))
        sources: tuple[Source, ...] = ()
        if existing is None:
            summary = delta
        elif remove:
            summary, sources = existing.summary.subtract(delta), existing.sources
            if summary.count:
                summary = policy.release(summary, what="the rows left after the removal")
        else:
            summary, sources = existing.summary.merge(delta), existing.sources
        source = Source(path=str(Path(csv).resolve()), op="remove" if remove else "add", rows=delta.count)
        columns = {c: types.get(c, TYPES[0]) for c in self.spec.all_columns}
        record = NodeRecord(
            name=name,
            summary=summary,
            types=existing.types if existing else columns,
            sources=(*sources, source),
            min_rows=policy.min_rows,
        )
        self.save(record)
        return record


def _atomic_write(path: Path, data: bytes) -> None:
    """Write-then-rename, so a crash never leaves a half-written summary behind."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
