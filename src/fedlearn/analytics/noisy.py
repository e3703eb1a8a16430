"""Differentially private summaries: a node's bounded sufficient statistics with Gaussian noise.

What a node releases (:func:`noisy_release`), for a :class:`~fedlearn.analytics.summary.SummarySpec`,
its declared classes and the per-column bounds of its policy, after clipping every row into those
bounds and expressing it about their centre ``c`` (:mod:`fedlearn.privacy.statistics`):

* ``count``; ``sum`` = ``Σ u`` and ``cross``, the packed upper triangle of ``Σ u uᵀ``, over all
  columns (target included), with ``u = clip(x) - c``;
* for a classification, per declared class: ``class/count``, ``class/sum`` and ``class/cross`` of
  the features (a row whose target is none of the declared classes counts in no class: the set of
  classes a node holds is not released);
* ``hist/<i>/counts``, each histogram's cells, underflow and overflow included;
* and, from its config rather than its rows, ``centre``, ``low`` and ``high``, plus the release's
  ``epsilon`` at the request's δ.

Raw sums about a fixed centre, not co-moments about the data's own mean, because only they have a
sensitivity the bounds fix. Everything is one Gaussian release (each block's share in
:func:`~fedlearn.privacy.statistics.block_stddevs`). A histogram request (``histograms_only``)
releases the cells alone, so their noise is not spread over moments nobody asked for.

The coordinator reads releases as :class:`NoisyStatistics`, adds them (exact algebra about a common
centre) and turns the total into an ordinary :class:`Summary` (:meth:`NoisyStatistics.to_summary`)
by post-processing, which costs no privacy: counts rounded and at least 1, means clipped into the
bounds, co-moments about those means projected onto the positive semi-definite cone (negative
eigenvalues to 0), the R factor rebuilt from them, extrema unknown. Every estimator then solves as
usual. Projection happens once, on the pooled total, so per-node noise is not biased node by node.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from fedlearn.analytics.classes import ClassMoments
from fedlearn.analytics.histogram import Histogram
from fedlearn.analytics.moments import Moments
from fedlearn.analytics.rfactor import RFactor
from fedlearn.analytics.summary import Summary, SummarySpec
from fedlearn.core.checks import name_mismatch
from fedlearn.core.errors import ConfigError, ValidationError
from fedlearn.core.messages import Task
from fedlearn.core.params import ParamSet
from fedlearn.privacy.ledger import Charge
from fedlearn.privacy.noise import NoiseSource, SystemNoise, add_gaussian
from fedlearn.privacy.statistics import (
    block_stddevs,
    check_bounds,
    clip_rows,
    cross_sensitivity,
    pack_upper,
    project_psd,
    sum_sensitivity,
    unpack_upper,
)

FloatArray = NDArray[np.float64]


class PrivacyBudget(Protocol):
    """The node's privacy policy for releases (``fedlearn.client.node_privacy.NodePrivacy`` implements it).

    ``spend`` checks ``charge`` at ``delta`` against the node's largest δ and least noise, records it
    in the node's lifetime budget (if it keeps one) for ``what``, and returns the ε spent so far
    (None without a budget); it raises :class:`~fedlearn.core.errors.PrivacyError`, recording
    nothing, when the node refuses.
    """

    def spend(self, charge: Charge, *, delta: float, what: str) -> float | None: ...


class NoiseFactory(Protocol):
    """Where a node's noise for ``task`` comes from: :class:`SystemNoise` when deployed, seeded in simulation."""

    def __call__(self, task: Task, /) -> NoiseSource: ...


def system_noise(task: Task, /) -> NoiseSource:
    """Deployed noise: a fresh AES-CTR keystream keyed from the OS's secure source, whatever the task says."""
    return SystemNoise()


@dataclass(frozen=True, slots=True, kw_only=True)
class NoisyStatistics:
    """One or more nodes' noisy sums about ``centre`` (see the module docstring); summed by :meth:`merge`.

    ``low``/``high`` span the bounds of every node summed; ``classes`` are the declared class codes.
    """

    spec: SummarySpec
    classes: tuple[int, ...]
    centre: FloatArray
    low: FloatArray
    high: FloatArray
    count: float
    sum: FloatArray
    cross: FloatArray
    class_count: FloatArray
    class_sum: FloatArray
    class_cross: FloatArray
    cells: tuple[FloatArray, ...] = ()

    @classmethod
    def from_params(cls, params: ParamSet, spec: SummarySpec, classes: Sequence[int]) -> NoisyStatistics:
        """Read a node's moments release; strict about names, shapes and finiteness."""
        d, width, k = spec.n_features, len(spec.all_columns), len(classes)
        shapes = {
            "centre": (width,), "low": (width,), "high": (width,), "count": (), "sum": (width,),
            "cross": (width * (width + 1) // 2,), "epsilon": (),
            **({"class/count": (k,), "class/sum": (k, d), "class/cross": (k, d * (d + 1) // 2)} if k else {}),
            **{f"hist/{i}/counts": (h.bins + 2,) for i, h in enumerate(spec.histograms)},
        }  # fmt: skip
        _check_layout(params, shapes)
        low, high = check_bounds(params["low"], params["high"])
        return cls(
            spec=spec,
            classes=tuple(int(c) for c in classes),
            centre=np.array(params["centre"], dtype=np.float64),
            low=low,
            high=high,
            count=float(params["count"]),
            sum=np.array(params["sum"], dtype=np.float64),
            cross=unpack_upper(np.asarray(params["cross"], dtype=np.float64), width),
            class_count=np.array(params["class/count"] if k else np.zeros(0)),
            class_sum=np.array(params["class/sum"] if k else np.zeros((0, d))),
            class_cross=unpack_upper(np.asarray(params["class/cross"]), d) if k else np.zeros((0, d, d)),
            cells=read_cells(params, spec),
        )

    def merge(self, other: NoisyStatistics) -> NoisyStatistics:
        """Both releases' sums together, ``other``'s re-expressed about this one's centre (exact algebra)."""
        if self.spec != other.spec or self.classes != other.classes:
            raise ConfigError("cannot add noisy statistics of different specs or classes")
        shift = other.centre - self.centre  # other's u plus shift is u about this centre
        d = self.spec.n_features
        part = shift[:d]
        return replace(
            self,
            low=np.minimum(self.low, other.low),
            high=np.maximum(self.high, other.high),
            count=self.count + other.count,
            sum=self.sum + other.sum + other.count * shift,
            cross=self.cross + _recentred(other.cross, other.sum, other.count, shift),
            class_count=self.class_count + other.class_count,
            class_sum=self.class_sum + other.class_sum + other.class_count[:, None] * part,
            class_cross=self.class_cross
            + np.array(
                [
                    _recentred(c, s, n, part)
                    for c, s, n in zip(other.class_cross, other.class_sum, other.class_count, strict=True)
                ]
            ).reshape(self.class_cross.shape),
            cells=tuple(a + b for a, b in zip(self.cells, other.cells, strict=True)),
        )

    def to_summary(self) -> Summary:
        """The :class:`Summary` these noisy sums stand for, by post-processing (module docstring)."""
        moments = _moments(self.count, self.sum, self.cross, self.centre, self.low, self.high)
        by_class = None
        if self.spec.by_class:
            d = self.spec.n_features
            groups = [
                _moments(n, s, c, self.centre[:d], self.low[:d], self.high[:d])
                for n, s, c in zip(self.class_count, self.class_sum, self.class_cross, strict=True)
            ]
            stacked = Moments.stack(groups) if groups else Moments.empty(d, (0,))
            by_class = ClassMoments(classes=np.array(self.classes, dtype=np.int64), moments=stacked)
        return Summary(
            spec=self.spec,
            moments=moments,
            factor=RFactor.from_moments(moments),
            by_class=by_class,
            histograms=rounded(self.cells, self.spec),
        )


def read_cells(params: ParamSet, spec: SummarySpec) -> tuple[FloatArray, ...]:
    """A release's noisy histogram cells, one array per histogram of ``spec``."""
    _check_layout(params, {f"hist/{i}/counts": (h.bins + 2,) for i, h in enumerate(spec.histograms)})
    return tuple(np.array(params[f"hist/{i}/counts"], dtype=np.float64) for i in range(len(spec.histograms)))


def rounded(cells: Sequence[FloatArray], spec: SummarySpec) -> tuple[Histogram, ...]:
    """Noisy cells as histograms: rounded to whole rows, never below 0 (post-processing)."""
    return tuple(
        Histogram(edges=h.edges(), counts=np.maximum(np.rint(c), 0).astype(np.int64))
        for c, h in zip(cells, spec.histograms, strict=True)
    )


def noisy_release(
    chunks: Iterable[FloatArray],
    spec: SummarySpec,
    *,
    classes: Sequence[int],
    low: FloatArray,
    high: FloatArray,
    noise_multiplier: float,
    source: NoiseSource,
    histograms_only: bool = False,
) -> ParamSet:
    """The node's release for ``spec``: clip, sum, add each block's Gaussian noise (module docstring).

    ``chunks`` hold the rows in ``spec.all_columns`` order, ``low``/``high`` the bounds of those
    columns. Without ``histograms_only`` the moments (and per-class moments) are released too.
    """
    low, high = check_bounds(low, high)
    d, width, k = spec.n_features, len(spec.all_columns), len(classes)
    half = (high - low) / 2
    codes = np.asarray(classes, dtype=np.float64)
    count, sums, cross = 0.0, np.zeros(width), np.zeros((width, width))
    class_count, class_sum, class_cross = np.zeros(k), np.zeros((k, d)), np.zeros((k, d, d))
    cells = [np.zeros(h.bins + 2) for h in spec.histograms]
    index = {name: i for i, name in enumerate(spec.all_columns)}
    for chunk in chunks:
        for i, h in enumerate(spec.histograms):
            cells[i] += Histogram.of(chunk[:, index[h.column]], h).counts
        if histograms_only:
            continue
        u = clip_rows(chunk, low, high)
        count += len(u)
        sums += u.sum(axis=0)
        cross += u.T @ u
        for j, code in enumerate(codes):
            rows = u[chunk[:, d] == code, :d]  # the raw target: a class is a code, not a clipped value
            class_count[j] += len(rows)
            class_sum[j] += rows.sum(axis=0)
            class_cross[j] += rows.T @ rows
    blocks: dict[str, tuple[FloatArray, float]] = {f"hist/{i}/counts": (c, 1.0) for i, c in enumerate(cells)}
    if not histograms_only:
        blocks |= {
            "count": (np.array([count]), 1.0),
            "sum": (sums, sum_sensitivity(half)),
            "cross": (pack_upper(cross), cross_sensitivity(half)),
        }
        if k:
            blocks |= {
                "class/count": (class_count, 1.0),
                "class/sum": (class_sum, sum_sensitivity(half[:d])),
                "class/cross": (pack_upper(class_cross), cross_sensitivity(half[:d])),
            }
    stddevs = block_stddevs(noise_multiplier, [delta for _, delta in blocks.values()])
    released: dict[str, FloatArray] = {"centre": (low + high) / 2, "low": low, "high": high}
    for (name, (values, _)), std in zip(blocks.items(), stddevs, strict=True):
        noisy = np.array(values, dtype=np.float64)
        add_gaussian(noisy, std, source)
        released[name] = noisy.reshape(()) if name == "count" else noisy
    return ParamSet(released)


def _check_layout(params: ParamSet, shapes: dict[str, tuple[int, ...]]) -> None:
    missing = name_mismatch(params, shapes).missing
    if missing:
        raise ValidationError(f"noisy statistics are missing {list(missing)}")
    for name, shape in shapes.items():
        value = params[name]
        if value.shape != shape or value.dtype.kind != "f" or not np.isfinite(value).all():
            raise ValidationError(
                f"noisy statistics: {name!r} must be finite floats of shape {shape}; got {value.shape}"
            )


def _recentred(cross: FloatArray, sums: FloatArray, count: float, shift: FloatArray) -> FloatArray:
    """``Σ (u + a)(u + a)ᵀ`` from ``Σ u uᵀ``, ``Σ u`` and the count."""
    return np.asarray(cross + np.outer(sums, shift) + np.outer(shift, sums) + count * np.outer(shift, shift))


def _moments(
    count: float, sums: FloatArray, cross: FloatArray, centre: FloatArray, low: FloatArray, high: FloatArray
) -> Moments:
    """Moments from noisy sums about ``centre``: count at least 1, mean in the bounds, co-moment PSD."""
    n = max(int(np.rint(count)), 1)
    mean = np.clip(centre + sums / n, low, high)
    m = mean - centre  # the co-moment about the clipped mean: Σ (u - m)(u - m)ᵀ
    comoment = project_psd(cross - np.outer(m, sums) - np.outer(sums, m) + n * np.outer(m, m))
    unknown = np.full(len(mean), np.nan)
    return Moments(count=np.asarray(n, dtype=np.int64), mean=mean, comoment=comoment, min=unknown, max=unknown)
