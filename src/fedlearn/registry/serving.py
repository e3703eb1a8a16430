"""The model a server is serving, and the watcher that moves it to a new version when its alias moves.

A server serves ``NAME@ALIAS``: whichever version the alias points at. :class:`ServedModel` holds
the loaded :class:`~fedlearn.registry.predictor.Predictor` in one reference. A request reads that
reference once and uses what it read for everything it does: encoding with that version's schema,
predicting, and naming the version in its answer. Swapping the reference therefore never mixes
two versions in one answer, and a request that started on the old version finishes on it, while
the next one starts on the new version. No lock is needed on the request path: assigning and
reading one attribute is atomic in Python.

:class:`AliasWatcher` polls a :class:`Resolver` (which version does the alias point at now?) every
``poll_seconds`` from its own thread. When the answer changes, it loads that version with a
:class:`Loader`, completely and off the request path, and only then swaps it in. A version that
fails to load is logged with the reason and the old one stays in service; the next poll tries
again. The resolver and loader are plain callables, so the registry's HTTP client, a local
store or a test can provide them; :class:`FileSource` provides them for an exported package file,
whose version is the file's modification time and size, so exporting a new version over the file
swaps it in.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from fedlearn.core.checks import POSITIVE, check_real
from fedlearn.core.errors import ConfigError
from fedlearn.registry.predictor import Predictor

logger = logging.getLogger(__name__)

DEFAULT_POLL_SECONDS = 10.0
"""How often a server asks where its alias points: a moved alias is served within this long."""


class Resolver(Protocol):
    """Which version the served reference (``NAME@ALIAS``) points at now, as an id a :class:`Loader` takes."""

    def __call__(self) -> str: ...


class Loader(Protocol):
    """The version ``version`` (an id from a :class:`Resolver`), loaded completely and ready to predict."""

    def __call__(self, version: str) -> Predictor: ...


@dataclass(frozen=True, slots=True)
class FileSource:
    """An exported package file as a :class:`Resolver` and :class:`Loader`: a file written anew is a new version."""

    path: Path
    read: Callable[[Path], Predictor]

    def resolve(self) -> str:
        try:
            stat = self.path.stat()
        except OSError as exc:
            raise ConfigError(f"cannot read model package {str(self.path)!r}: {exc.strerror}") from None
        return f"{stat.st_mtime_ns}:{stat.st_size}"

    def load(self, version: str) -> Predictor:
        return self.read(self.path)


@dataclass(frozen=True, slots=True)
class Prediction:
    """One request's predictions, with the version that made them."""

    version: str
    values: list[Any]


def predict(model: Predictor, columns: Mapping[str, Sequence[Any]]) -> Prediction:
    """Encode ``columns`` with ``model``'s schema and predict; ``SchemaError`` names a column that does not fit."""
    features = model.schema.encode(columns, where="the request")
    return Prediction(version=model.version, values=model.predict(features).tolist())


class ServedModel:
    """The predictor being served, replaced whole by :meth:`swap`; ``current`` is None until one is loaded."""

    def __init__(self, model: Predictor | None = None) -> None:
        self._model = model

    @property
    def current(self) -> Predictor | None:
        """The model to answer one request with: read it once per request and use only what was read."""
        return self._model

    def swap(self, model: Predictor) -> None:
        """Serve ``model`` from the next request on; requests already running finish on the one they read."""
        self._model = model


class AliasWatcher:
    """Keeps a :class:`ServedModel` on the version its alias points at, polling from a thread of its own.

    Call :meth:`check` once before serving to load the first version (it raises if that fails,
    since there is nothing to fall back on), then :meth:`start` the polling thread, and
    :meth:`stop` it at shutdown.
    """

    def __init__(
        self, served: ServedModel, *, resolve: Resolver, load: Loader, poll_seconds: float = DEFAULT_POLL_SECONDS
    ) -> None:
        self.served = served
        self.resolve = resolve
        self.load = load
        self.poll_seconds = check_real("poll_seconds", poll_seconds, POSITIVE)
        self.version: str | None = None  # the resolver's id of the version being served
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def check(self) -> bool:
        """Resolve the alias once and, if it moved, load the new version and swap it in; whether it swapped.

        Errors propagate: :meth:`start`'s loop catches and logs them, so that the old version keeps serving.
        """
        version = self.resolve()
        if version == self.version:
            return False
        model = self.load(version)  # the slow part, while the old version goes on answering
        self.served.swap(model)
        previous, self.version = self.version, version
        if previous is not None:
            logger.info("serving: the alias moved from %s to %s; now serving %s", previous, version, model.version)
        return True

    def start(self) -> None:
        """Poll every ``poll_seconds`` in a daemon thread until :meth:`stop`."""
        self._thread = threading.Thread(target=self._poll, name="alias-watcher", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _poll(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            try:
                self.check()
            except Exception as exc:  # any failure of a resolver or loader: keep serving what we have
                logger.warning("serving: could not move to the alias's new version (%s); still serving %s",
                               exc, self.version)  # fmt: skip
