"""Per-class moments: what naive Bayes and discriminant analysis are solved from.

Nodes need not agree on the set of classes in advance: each reports the classes it holds, and a
merge takes the union, so a class seen by only one node is still counted exactly once. Class
labels are integer codes, because labels travel as arrays and must compare exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from fedlearn.analytics.moments import Moments, merge_all
from fedlearn.core.errors import ConfigError, ValidationError
from fedlearn.core.params import ParamSet


def class_codes(values: ArrayLike, *, name: str = "target") -> NDArray[np.int64]:
    """Integer class codes from a float or integer column; a fractional value is a config error.

    The error does not quote the value: it travels back to whoever asked, and a coordinator could
    otherwise read a row's value by naming a continuous column as the classes.
    """
    y = np.asarray(values)
    if y.dtype.kind in "iub":
        return y.astype(np.int64)
    if y.dtype.kind != "f":
        raise ConfigError(f"`{name}` must hold integer class codes; got dtype {y.dtype}")
    codes = y.astype(np.int64)
    bad = codes != y
    if bad.any():
        raise ConfigError(f"`{name}` must hold integer class codes for per-class statistics; it holds fractions")
    return codes


@dataclass(frozen=True, slots=True, kw_only=True)
class ClassMoments:
    """Moments of the feature columns for each class, classes sorted ascending."""

    classes: NDArray[np.int64]
    moments: Moments

    def __post_init__(self) -> None:
        classes = np.array(self.classes, dtype=np.int64)
        classes.flags.writeable = False
        if classes.ndim != 1 or self.moments.batch_shape != classes.shape:
            raise ValidationError(
                f"per-class moments: {classes.shape} class labels for moments of batch shape {self.moments.batch_shape}"
            )
        if (np.diff(classes) <= 0).any():
            raise ValidationError("per-class moments: class labels must be unique and sorted")
        object.__setattr__(self, "classes", classes)

    @classmethod
    def empty(cls, n_features: int) -> ClassMoments:
        return cls(classes=np.zeros(0, np.int64), moments=Moments.empty(n_features, (0,)))

    @classmethod
    def of(cls, rows: ArrayLike, labels: ArrayLike) -> ClassMoments:
        """Per-class moments of one chunk of rows with integer ``labels``."""
        x = np.asarray(rows, dtype=np.float64)
        codes = class_codes(labels)
        present = np.unique(codes)
        groups = [Moments.of(x[codes == k]) for k in present]
        if not groups:
            return cls.empty(x.shape[1])
        return cls(classes=present, moments=Moments.stack(groups))

    @property
    def n_features(self) -> int:
        return self.moments.n_features

    @property
    def counts(self) -> NDArray[np.int64]:
        return self.moments.count

    def total(self) -> Moments:
        """The moments of all classes together."""
        if len(self.classes) == 0:
            return Moments.empty(self.n_features)
        return merge_all([self.moments.take(i) for i in range(len(self.classes))])

    def _aligned(self, classes: NDArray[np.int64]) -> Moments:
        """These moments laid out over ``classes`` (a superset), empty where a class is absent."""
        out = Moments.empty(self.n_features, (len(classes),))
        if len(self.classes) == 0:
            return out
        where = np.searchsorted(classes, self.classes)
        fields: dict[str, Any] = {}
        for f in ("count", "mean", "comoment", "min", "max"):
            array = np.array(getattr(out, f))
            array[where] = getattr(self.moments, f)
            fields[f] = array
        return Moments(**fields)

    def merge(self, other: ClassMoments) -> ClassMoments:
        union = np.union1d(self.classes, other.classes)
        return ClassMoments(classes=union, moments=self._aligned(union).merge(other._aligned(union)))

    def subtract(self, other: ClassMoments) -> ClassMoments:
        """Remove ``other``'s rows; classes left with no rows disappear, as if never added."""
        unknown = np.setdiff1d(other.classes, self.classes)
        if len(unknown):
            raise ConfigError(f"cannot remove rows of class {int(unknown[0])}: no rows of that class were added")
        left = self.moments.subtract(other._aligned(self.classes))
        keep = left.count > 0
        return ClassMoments(classes=self.classes[keep], moments=left.take(keep))

    def to_params(self) -> ParamSet:
        return ParamSet({"classes": self.classes}).merged(self.moments.to_params())

    @classmethod
    def from_params(cls, params: ParamSet) -> ClassMoments:
        if "classes" not in params:
            raise ValidationError("per-class moments are missing 'classes'")
        if params["classes"].dtype.kind not in "iu":
            raise ValidationError(f"per-class moments: classes must be integers; got {params['classes'].dtype}")
        moments = Moments.from_params(ParamSet({k: v for k, v in params.items() if k != "classes"}))
        return cls(classes=params["classes"], moments=moments)
