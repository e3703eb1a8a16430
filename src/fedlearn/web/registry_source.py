"""The coordinator's model registry as a model server sees it: where a reference points, and that version loaded.

:class:`RegistrySource` gives :class:`~fedlearn.registry.serving.AliasWatcher` its resolver and
loader over the coordinator's HTTP API. Resolving reads the model's versions and aliases
(``GET /api/models/{name}``), a few hundred bytes; only a version not yet served is downloaded
(``GET /api/models/{name}@{version}/package``). The package is fetched by its version number,
not by the alias, so an alias that moves between the two calls cannot make the server load one
version while believing it serves another.
"""

from __future__ import annotations

from dataclasses import dataclass

from fedlearn.core.errors import NotFoundError
from fedlearn.registry.catalog import parse_ref
from fedlearn.registry.package import ModelPackage
from fedlearn.registry.predictor import Predictor
from fedlearn.registry.predictors import load_package
from fedlearn.web.client import CoordinatorClient

LATEST = "latest"


@dataclass(frozen=True, slots=True)
class RegistrySource:
    """``ref`` (``NAME``, ``NAME@VERSION``, ``NAME@ALIAS``) on the coordinator behind ``client``."""

    client: CoordinatorClient
    ref: str
    trust_code: bool = False

    def resolve(self) -> str:
        """The version number the reference points at now, as text."""
        name, selector = parse_ref(self.ref)
        if selector is not None and selector.isdigit():
            return str(int(selector))
        detail = self.client.model_detail(name)
        if selector is None or selector == LATEST:
            return str(max(version.version for version in detail.versions))
        if selector not in detail.aliases:
            raise NotFoundError(f"model {name!r} has no alias {selector!r}; `fedlearn models show {name}` lists them")
        return str(detail.aliases[selector])

    def load(self, version: str) -> Predictor:
        """Version ``version``'s package, downloaded and loaded; a fault in it is one CodecError/ConfigError line."""
        name, _ = parse_ref(self.ref)
        package = ModelPackage.from_bytes(self.client.model_package(f"{name}@{int(version)}"))
        return load_package(package, trust_code=self.trust_code)
