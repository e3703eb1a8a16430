"""What a node summarises (``SummarySpec``) and the summary it sends back (``Summary``).

A summary bundles the moments of the feature and target columns with the triangular factor
``R`` of the same centred rows (:mod:`.rfactor`), optionally per-class moments of the features
and histograms with agreed bins. It is a monoid like its parts: merge in any order, with
:meth:`Summary.empty` as the identity. On the wire it is one flat :class:`~fedlearn.core.ParamSet`
(``moments/…`` with the factor of the same rows under ``moments/factor/…``, ``by_class/…``,
``hist/<i>/…``), so it travels through the safetensors codec as is; the spec travels as JSON in
the task config.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from fedlearn.analytics.classes import ClassMoments
from fedlearn.analytics.histogram import Histogram, HistogramSpec
from fedlearn.analytics.moments import Moments
from fedlearn.analytics.rfactor import RFactor
from fedlearn.core.checks import name_mismatch
from fedlearn.core.errors import ConfigError, ValidationError
from fedlearn.core.params import ParamSet


def _check_name(name: object, what: str) -> str:
    if not isinstance(name, str) or not name or "," in name:
        raise ConfigError(f"{what} must be a non-empty string without commas; got {name!r}")
    return name


@dataclass(frozen=True, slots=True, kw_only=True)
class SummarySpec:
    """Which columns to summarise and how.

    ``columns`` are the features; ``target`` (optional) is summarised with them as one more
    column, so the moments hold ``XᵀX`` and ``Xᵀy`` together. ``by_class`` adds moments of the
    features per integer class of the target. ``histograms`` adds counts over agreed bins.
    """

    columns: tuple[str, ...]
    target: str | None = None
    by_class: bool = False
    histograms: tuple[HistogramSpec, ...] = ()

    def __post_init__(self) -> None:
        if isinstance(self.columns, str):
            raise ConfigError(f"`columns` must be a sequence of names, not one string; got {self.columns!r}")
        columns = tuple(_check_name(c, "each column name") for c in self.columns)
        if not columns:
            raise ConfigError("`columns` must name at least one feature column; got none")
        if self.target is not None:
            _check_name(self.target, "`target`")
        everything = (*columns, *([self.target] if self.target else []))
        if len(set(everything)) != len(everything):
            raise ConfigError(f"column names must be unique (target included); got {list(everything)}")
        if self.by_class and self.target is None:
            raise ConfigError("`by_class=True` needs a `target` column holding the class codes")
        for h in self.histograms:
            if h.column not in everything:
                raise ConfigError(
                    f"histogram column {h.column!r} is not one of the summarised columns {list(everything)}"
                )
        object.__setattr__(self, "columns", columns)
        object.__setattr__(self, "histograms", tuple(self.histograms))

    @property
    def n_features(self) -> int:
        return len(self.columns)

    @property
    def all_columns(self) -> tuple[str, ...]:
        """Features then target: the column order of every chunk a node reads."""
        return (*self.columns, self.target) if self.target else self.columns

    def to_json(self) -> str:
        return json.dumps(
            {
                "columns": list(self.columns),
                "target": self.target,
                "by_class": self.by_class,
                "histograms": [[h.column, h.low, h.high, h.bins] for h in self.histograms],
            }
        )

    @classmethod
    def from_json(cls, text: str) -> SummarySpec:
        try:
            raw: Any = json.loads(text)
            return cls(
                columns=tuple(raw["columns"]),
                target=raw.get("target"),
                by_class=bool(raw.get("by_class", False)),
                histograms=tuple(
                    HistogramSpec(column=c, low=float(lo), high=float(hi), bins=int(b))
                    for c, lo, hi, b in raw.get("histograms", [])
                ),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"summary spec is not valid JSON of the expected shape: {exc}") from exc


@dataclass(frozen=True, slots=True, kw_only=True)
class Summary:
    """Everything a node shares about its rows for one :class:`SummarySpec`.

    ``factor`` is the ``R`` of the same rows as ``moments`` (all columns, target included);
    least squares and PCA are solved from it. It is unknown after rows are removed until the
    node factors its remaining rows again (:meth:`with_rescan`).
    """

    spec: SummarySpec
    moments: Moments
    factor: RFactor
    by_class: ClassMoments | None = None
    histograms: tuple[Histogram, ...] = ()

    def __post_init__(self) -> None:
        d = len(self.spec.all_columns)
        if self.moments.batch_shape != () or self.moments.n_features != d:
            raise ValidationError(f"summary: moments must cover {d} columns; got {self.moments.n_features}")
        if self.factor.n_columns != d or int(self.factor.count) != self.count:
            raise ValidationError(
                f"summary: the R factor must cover the moments' {d} columns and {self.count} rows; "
                f"got {self.factor.n_columns} columns and {int(self.factor.count)} rows"
            )
        if self.spec.by_class != (self.by_class is not None):
            raise ValidationError("summary: per-class moments must be present exactly when the spec asks for them")
        if self.by_class is not None and self.by_class.n_features != self.spec.n_features:
            raise ValidationError(
                f"summary: per-class moments must cover {self.spec.n_features} features; got {self.by_class.n_features}"
            )
        if len(self.histograms) != len(self.spec.histograms):
            raise ValidationError(
                f"summary: {len(self.spec.histograms)} histograms expected; got {len(self.histograms)}"
            )
        object.__setattr__(self, "histograms", tuple(self.histograms))

    @classmethod
    def empty(cls, spec: SummarySpec) -> Summary:
        """The identity of :meth:`merge`."""
        return cls(
            spec=spec,
            moments=Moments.empty(len(spec.all_columns)),
            factor=RFactor.empty(len(spec.all_columns)),
            by_class=ClassMoments.empty(spec.n_features) if spec.by_class else None,
            histograms=tuple(Histogram.empty(h) for h in spec.histograms),
        )

    @property
    def count(self) -> int:
        return int(self.moments.count)

    @property
    def features(self) -> Moments:
        """Moments of the feature columns alone."""
        return self.moments.select(range(self.spec.n_features))

    def merge(self, other: Summary) -> Summary:
        self._check_same_spec(other)
        return Summary(
            spec=self.spec,
            moments=self.moments.merge(other.moments),
            factor=self.factor.merge(other.factor),
            by_class=None if self.by_class is None or other.by_class is None else self.by_class.merge(other.by_class),
            histograms=tuple(a.merge(b) for a, b in zip(self.histograms, other.histograms, strict=True)),
        )

    def subtract(self, other: Summary) -> Summary:
        """Remove ``other``'s rows; see :meth:`Moments.subtract` for what happens to extrema.

        The R factor becomes unknown: rows cannot be taken out of ``R`` stably. The node that owns
        the rows restores it (and the extrema) from its remaining rows, see :meth:`with_rescan`;
        until then estimators fall back to the moments.
        """
        self._check_same_spec(other)
        moments = self.moments.subtract(other.moments)
        return Summary(
            spec=self.spec,
            moments=moments,
            factor=RFactor.unknown(moments.count, moments.mean),
            by_class=None
            if self.by_class is None or other.by_class is None
            else self.by_class.subtract(other.by_class),
            histograms=tuple(a.subtract(b) for a, b in zip(self.histograms, other.histograms, strict=True)),
        )

    def without_extrema(self) -> Summary:
        """A copy whose minima and maxima (overall and per class) are NaN, i.e. unknown.

        Extrema are values of single rows; a node releases them only where its policy allows.
        NaN is what the summaries already use for an unknown extreme, so it merges and prints as one.
        """
        unknown = np.full(self.moments.min.shape, np.nan)
        by_class = self.by_class
        if by_class is not None:
            per_class = np.full(by_class.moments.min.shape, np.nan)
            moments = by_class.moments.with_extrema(per_class, per_class)
            by_class = ClassMoments(classes=by_class.classes, moments=moments)
        return replace(self, moments=self.moments.with_extrema(unknown, unknown), by_class=by_class)

    def with_rescan(self, rescan: ParamSet) -> Summary:
        """A copy whose extrema, R factor and histograms come from the owning node's fresh scan of its rows.

        ``rescan`` is what :func:`~fedlearn.analytics.scan.rescan` returns: ``count``,
        ``min`` and ``max`` over all columns, the R factor under ``factor/``, for per-class
        summaries ``by_class/{classes,count,min,max}`` and each histogram under ``hist/<i>/``.
        """
        if int(rescan["count"]) != self.count:
            raise ValidationError(
                f"the node scanned {int(rescan['count'])} remaining rows but the summary holds {self.count}: "
                "its data must already exclude the removed rows"
            )
        moments = self.moments.with_extrema(rescan["min"], rescan["max"])
        factor = RFactor.from_params(rescan.select("factor/"))
        by_class = self.by_class
        if by_class is not None:
            if not np.array_equal(rescan["by_class/classes"], by_class.classes) or not np.array_equal(
                rescan["by_class/count"], by_class.counts
            ):
                raise ValidationError("rescan: the node's classes differ from the summary's; summarise afresh")
            by_class = ClassMoments(
                classes=by_class.classes,
                moments=by_class.moments.with_extrema(rescan["by_class/min"], rescan["by_class/max"]),
            )
        histograms = tuple(Histogram.from_params(rescan.select(f"hist/{i}/")) for i in range(len(self.histograms)))
        if any(not np.array_equal(new.edges, old.edges) for new, old in zip(histograms, self.histograms, strict=True)):
            raise ValidationError("rescan: a histogram does not use the agreed bins")
        return Summary(spec=self.spec, moments=moments, factor=factor, by_class=by_class, histograms=histograms)

    def _check_same_spec(self, other: Summary) -> None:
        if self.spec != other.spec:
            raise ConfigError(f"cannot combine summaries of different specs: {self.spec} and {other.spec}")

    def to_params(self) -> ParamSet:
        moments = self.moments.to_params().merged(self.factor.to_params().with_prefix("factor/"))
        parts = [moments.with_prefix("moments/")]
        if self.by_class is not None:
            parts.append(self.by_class.to_params().with_prefix("by_class/"))
        parts.extend(h.to_params().with_prefix(f"hist/{i}/") for i, h in enumerate(self.histograms))
        return ParamSet().merged(*parts)

    @classmethod
    def from_params(cls, params: ParamSet, spec: SummarySpec) -> Summary:
        """Rebuild a summary the coordinator asked for with ``spec``; strict about the layout."""
        mismatch = name_mismatch(params, cls.empty(spec).to_params())
        if mismatch:
            raise ValidationError(f"summary parameters: {mismatch}")
        summary = cls(
            spec=spec,
            moments=Moments.from_params(params.select("moments/")),
            factor=RFactor.from_params(params.select("moments/factor/")),
            by_class=ClassMoments.from_params(params.select("by_class/")) if spec.by_class else None,
            histograms=tuple(Histogram.from_params(params.select(f"hist/{i}/")) for i in range(len(spec.histograms))),
        )
        for got, want in zip(summary.histograms, spec.histograms, strict=True):
            if not np.array_equal(got.edges, want.edges()):
                raise ValidationError(f"summary: histogram of {want.column!r} does not use the agreed bins")
        return summary
