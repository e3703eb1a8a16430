"""Named parameter sets: the one currency every part of fedlearn trades in.

A model is a mapping from names to arrays. That fits a torch ``state_dict``, a scikit-learn
estimator's ``coef_``/``intercept_`` and optimizer state alike, and it is exactly what the
safetensors wire format stores. ``ParamSet`` is immutable: its arrays are read-only views, so a
set received from the network or shared between nodes can never be changed behind anyone's
back. Arithmetic returns new sets and keeps each array's dtype.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, ItemsView, Iterator, KeysView, Mapping, ValuesView
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from fedlearn.core.checks import name_mismatch
from fedlearn.core.errors import ValidationError

Array = NDArray[Any]
Spec = dict[str, tuple[tuple[int, ...], str]]


def _frozen_view(value: ArrayLike) -> Array:
    """A read-only view that leaves the caller's array (and its flags) untouched."""
    array = np.asarray(value)
    view = array.view()
    view.flags.writeable = False
    return view


class ParamSet(Mapping[str, Array]):
    """An immutable mapping from parameter names to arrays."""

    __slots__ = ("_arrays", "_nbytes")

    def __init__(self, arrays: Mapping[str, ArrayLike] | None = None) -> None:
        items: dict[str, Array] = {}
        for name, value in (arrays or {}).items():
            if not isinstance(name, str) or not name:
                raise ValidationError(f"parameter names must be non-empty strings; got {name!r}")
            items[name] = _frozen_view(value)
        self._arrays = items
        self._nbytes = sum(a.nbytes for a in items.values())  # asked for many times per reply

    def __getitem__(self, name: str) -> Array:
        return self._arrays[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._arrays)

    def __len__(self) -> int:
        return len(self._arrays)

    # The dict's own read-only views: the Mapping defaults go through __getitem__ in Python, and
    # the engine asks for names and items of every reply several times.
    def __contains__(self, name: object) -> bool:
        return name in self._arrays

    def keys(self) -> KeysView[str]:
        return self._arrays.keys()

    def values(self) -> ValuesView[Array]:
        return self._arrays.values()

    def items(self) -> ItemsView[str, Array]:
        return self._arrays.items()

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}: {v.dtype}{list(v.shape)}" for k, v in self._arrays.items())
        return f"ParamSet({{{inner}}})"

    @property
    def nbytes(self) -> int:
        """Total size of all arrays in bytes."""
        return self._nbytes

    @property
    def num_values(self) -> int:
        """Total number of scalar values across all arrays."""
        return sum(a.size for a in self._arrays.values())

    def spec(self) -> Spec:
        """Names, shapes and dtypes: what a reply must match to be accepted."""
        return {k: (tuple(v.shape), v.dtype.str) for k, v in self._arrays.items()}

    def map(self, fn: Callable[[Array], ArrayLike]) -> ParamSet:
        """Apply ``fn`` to every array."""
        return ParamSet({k: fn(v) for k, v in self._arrays.items()})

    def zip_map(self, other: Mapping[str, Array], fn: Callable[[Array, Array], ArrayLike]) -> ParamSet:
        """Apply ``fn`` pairwise; both sets must have the same names."""
        _require_same_names(self, other)
        return ParamSet({k: fn(v, other[k]) for k, v in self._arrays.items()})

    def astype(self, dtype: Any) -> ParamSet:
        return self.map(lambda a: a.astype(dtype, copy=False))

    def zeros_like(self, dtype: Any = None) -> ParamSet:
        return self.map(lambda a: np.zeros_like(a, dtype=dtype))

    def __add__(self, other: Mapping[str, Array]) -> ParamSet:
        return self.zip_map(other, lambda a, b: (a + b).astype(a.dtype, copy=False))

    def __sub__(self, other: Mapping[str, Array]) -> ParamSet:
        return self.zip_map(other, lambda a, b: (a - b).astype(a.dtype, copy=False))

    def __mul__(self, scalar: float) -> ParamSet:
        return self.map(lambda a: (a * scalar).astype(a.dtype, copy=False))

    __rmul__ = __mul__

    def __truediv__(self, scalar: float) -> ParamSet:
        return self.map(lambda a: (a / scalar).astype(a.dtype, copy=False))

    def __neg__(self) -> ParamSet:
        return self.map(np.negative)

    def l2_norm(self) -> float:
        """Global L2 norm across all arrays, computed in float64."""
        return float(np.sqrt(sum(float(np.vdot(a, a).real) for a in self._arrays.values())))

    def is_finite(self) -> bool:
        return all(bool(np.isfinite(a).all()) for a in self._arrays.values() if a.dtype.kind in "fc")

    def bitwise_equal(self, other: Mapping[str, Array]) -> bool:
        """True when names, dtypes, shapes and every byte agree (NaN-safe, unlike ==)."""
        if set(self) != set(other):
            return False
        return all(
            a.dtype == other[k].dtype and a.shape == other[k].shape and a.tobytes() == other[k].tobytes()
            for k, a in self._arrays.items()
        )

    def digest(self) -> str:
        """sha256 over names, dtypes, shapes and bytes: a content address for caching and storage."""
        h = hashlib.sha256()
        for name in sorted(self._arrays):
            a = self._arrays[name]
            h.update(f"{name}\0{a.dtype.str}\0{a.shape}\0".encode())
            h.update(np.ascontiguousarray(a).data)
        return h.hexdigest()

    def with_prefix(self, prefix: str) -> ParamSet:
        """Namespace every name, e.g. to nest optimizer state inside a checkpoint."""
        return ParamSet({f"{prefix}{k}": v for k, v in self._arrays.items()})

    def select(self, prefix: str) -> ParamSet:
        """The sub-set whose names start with ``prefix``, with the prefix removed."""
        return ParamSet({k[len(prefix) :]: v for k, v in self._arrays.items() if k.startswith(prefix)})

    def merged(self, *others: Mapping[str, Array]) -> ParamSet:
        """Union of several sets; a repeated name is an error, never a silent overwrite."""
        out = dict(self._arrays)
        for other in others:
            for k, v in other.items():
                if k in out:
                    raise ValidationError(f"parameter name {k!r} appears twice when merging")
                out[k] = v
        return ParamSet(out)

    def to_dict(self, *, writable: bool = False) -> dict[str, Array]:
        """A plain dict; with ``writable=True`` the arrays are fresh copies safe to modify."""
        if writable:
            return {k: np.array(v) for k, v in self._arrays.items()}
        return dict(self._arrays)


def _require_same_names(a: Mapping[str, Array], b: Mapping[str, Array]) -> None:
    if a.keys() != b.keys():
        raise ValidationError(f"parameter names differ: {name_mismatch(b, a)}")
