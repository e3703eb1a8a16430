"""A node's own config (NODE.toml): the datasets it holds, the learner that trains on them, and its policy.

Data sources are declared here, on the node, and never in a run config: the coordinator only
ever refers to a dataset by name. Sources are a built-in dataset partitioned exactly as
``fedlearn simulate`` would (for rehearsals and parity checks), a CSV file, a Parquet file or
directory, or an SQL query (or table) that runs inside the data's own database. ``[datasets.NAME.columns]``
declares column types and the category list of each text column, the same on every node
(docs/data-sources.md). The datasets the node trains and evaluates on are read when it starts; the
others are checked then and read from their source, in chunks, at each analytics task. With
``pushdown``, analytics summaries are computed by the dataset's own database instead
(:mod:`fedlearn.analytics.node_sources`, docs/in-database-statistics.md).

``[privacy]`` is the node's differential-privacy policy and its lifetime privacy budget, kept in a
ledger file that survives restarts and crashes (:mod:`fedlearn.client.budget`).

``[policy]`` is what the node discloses to analytics tasks, whatever a coordinator asks (see
:mod:`fedlearn.analytics.policy`), and where it records every task it answers (see
:mod:`fedlearn.runtime.audit`). It used to be ``[node] min_rows``; that key is refused with a
message saying where it moved, so a node never runs with a threshold it did not mean.

::

    [node]
    dataset = "visits"                 # the dataset fit tasks train on
    holdout_fraction = 0.2             # rows of it kept back for evaluate tasks (or evaluation_dataset = "NAME")
    holdout_seed = 0                   # which rows: the same seed keeps back the same rows
    learner = "sklearn.sgd"            # built-in name, or "package.module:function"
    learner_options = { alpha = 1e-4 }
    blas_threads = 1                   # fixed, so results match a simulation bit for bit

    [policy]
    columns = ["age", "bmi", "bp", "y"]  # what analytics tasks may use (absent: every column); a target is "y"
    min_rows = 20                      # no summary, class or histogram cell of fewer rows (default: features + 5)
    max_bins = 1000                    # histogram bins one task may ask for
    release_extrema = false            # minima and maxima are values of single rows
    bounds = { age = [0, 120], bmi = [10, 60], bp = [40, 200], y = [0, 1] }   # rows are clipped into these
                                       # before a differentially private release; a DP request naming a
                                       # column without bounds is refused (never taken from the data)
    max_release_epsilon = 10.0         # the most ε one DP release may spend (at the request's δ)
    audit_log = "/var/log/fedlearn/audit.jsonl"   # one JSON line per task answered

    [privacy]
    epsilon_budget = 8.0               # lifetime ε across every run and analytics task (absent: no budget)
    delta = 1e-5                       # δ the budget is kept at; a task asking a larger δ is refused
    ledger = "hospital-a.privacy-ledger.json"  # its ledger (default: NAME.privacy-ledger.json beside this file)
    require_differential_privacy = false  # refuse fit tasks without DP and noiseless statistics (a budget implies it)
    min_noise_multiplier = 0.5         # refuse any release with less noise than this (over sensitivity)

    [secure_aggregation]
    require = true                     # refuse to send an update in the clear
    identity_key = "hospital-a.identity.key"   # made on first start (default: NAME.identity.key beside this file)
    peers = "federation.toml"          # pinned identity keys of every node (absent: the coordinator vouches)

    [scoring]                          # federated scoring (docs/federated-scoring.md)
    allow = true                       # write predictions into this node's database (default: false)
    write_url = "postgresql://writer@db.internal/clinic"  # where (default: an SQL dataset's own database)
    tables = ["churn_scores"]          # the only tables a coordinator may name (absent: any new or
                                       # prediction-shaped table)

    [attack]                           # RED-TEAM EXERCISES ONLY: this node attacks the federation
    name = "sign_flip"                 # any attack of fedlearn.client.attacks.ATTACKS
    scale = 4.0                        # ... and its options
    shards = 4                         # parts of its own rows it trains on to estimate benign updates
    seed = 0                           # the draw of poisoned rows and shards

    [datasets.visits]
    source = "sql"
    url = "postgresql://reader@db.internal/clinic"
    query = "SELECT age, bmi, bp, smoker, outcome FROM visits WHERE consent"   # or table = "visits"
    target = "outcome"
    task = "classification"
    n_classes = 2
    batch_rows = 65536                 # rows fetched at a time
    pushdown = true                    # analytics summaries run as SQL aggregates in the database (the default
                                       # for SQL; CSV files need the `duckdb` extra and opt in), no row leaves it

    [datasets.visits.columns]          # undeclared numeric columns are float; text must be a category
    smoker = ["never", "former", "current"]   # one-hot in this order on every node; declared columns are
                                              # encoded on the node, so their dataset is streamed, not pushed down
    age = "int"

    [datasets.labs]
    source = "parquet"                 # or "csv" (with delimiter = ","), read through pyarrow in batches
    path = "labs/"                     # a file or a directory of files, relative to where the node starts
    target = "glucose"
    task = "regression"
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from fedlearn.client.attacks import Attack, build_attack
from fedlearn.core.config_files import read_toml, validate
from fedlearn.core.errors import ConfigError, SchemaError
from fedlearn.core.limits import DEFAULT_MAX_BINS
from fedlearn.data.arrow_reader import open_csv, open_parquet
from fedlearn.data.columns import category_names, declared_columns
from fedlearn.data.dataset import Dataset
from fedlearn.data.dataset_table import DatasetTable
from fedlearn.data.reader import DEFAULT_BATCH_ROWS, Reader, dataset_layout, read_dataset
from fedlearn.data.split import hold_out, split_over_nodes
from fedlearn.data.sql import SqlReader
from fedlearn.privacy.statistics import DEFAULT_MAX_RELEASE_EPSILON


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BuiltinSource(_Section):
    """Part ``index`` of a built-in dataset split over ``nodes`` as ``simulate`` splits it."""

    source: Literal["builtin"]
    name: str
    nodes: int = Field(ge=1)
    index: int = Field(ge=0)
    seed: int = Field(0, ge=0)
    test_fraction: float = Field(0.2, gt=0, lt=1)
    partition: str = "iid"
    partition_options: dict[str, Any] = Field(default_factory=dict)
    dataset_options: dict[str, Any] = Field(default_factory=dict)

    def load(self) -> Dataset:
        if self.index >= self.nodes:
            raise ConfigError(f"`index` must be < `nodes` ({self.nodes}); got {self.index}")
        parts, _ = split_over_nodes(
            self.name,
            nodes=self.nodes,
            test_fraction=self.test_fraction,
            partitioner=self.partition,
            seed=self.seed,
            dataset_options=self.dataset_options,
            partition_options=self.partition_options,
        )
        return parts[self.index]

    def streamed(self) -> Dataset:
        """A built-in dataset is generated in memory, so analytics reads it loaded."""
        return self.load()


class _TabularSource(_Section):
    """A source read through a data connector; ``load`` reads it whole, ``streamed`` chunk by chunk at each read."""

    target: str | None = None
    features: list[str] | None = None
    columns: dict[str, str | list[str] | dict[str, Any]] | None = None
    task: Literal["classification", "regression"] = "classification"
    n_classes: int = Field(0, ge=0)
    batch_rows: int = Field(DEFAULT_BATCH_ROWS, ge=1)

    @field_validator("columns")
    @classmethod
    def _declared(cls, columns: dict[str, Any] | None) -> dict[str, Any] | None:
        declared_columns(columns)  # a bad declaration fails when the config is read
        return columns

    def reader(self) -> Reader:
        raise NotImplementedError  # each source opens its own

    def name(self) -> str:
        raise NotImplementedError

    def load(self) -> Dataset:
        return read_dataset(
            self.reader(), target=self.target, features=self.features, columns=self.columns, task=self.task,
            n_classes=self.n_classes, name=self.name(), batch_rows=self.batch_rows,
        )  # fmt: skip

    def streamed(self) -> DatasetTable:
        """The rows as :meth:`load` lays them out, read at each task; the column types are checked now."""
        reader = self.reader()
        layout = dataset_layout(
            reader, target=self.target, features=self.features, columns=self.columns, task=self.task,
            n_classes=self.n_classes,
        )  # fmt: skip
        return DatasetTable(reader, layout)


class CsvSource(_TabularSource):
    source: Literal["csv"]
    path: Path
    delimiter: str = Field(",", min_length=1, max_length=1)
    pushdown: bool = Field(False, strict=True)  # summaries computed by DuckDB (docs/in-database-statistics.md)

    def reader(self) -> Reader:
        return open_csv(self.path, delimiter=self.delimiter, text_columns=category_names(self.columns))

    def name(self) -> str:
        return self.path.stem


class ParquetSource(_TabularSource):
    source: Literal["parquet"]
    path: Path

    def reader(self) -> Reader:
        return open_parquet(self.path)

    def name(self) -> str:
        return self.path.stem


class SqlSource(_TabularSource):
    source: Literal["sql"]
    url: str
    query: str | None = None
    table: str | None = None
    pushdown: bool = Field(True, strict=True)  # summaries computed by the database (docs/in-database-statistics.md)

    @model_validator(mode="after")
    def _query_or_table(self) -> SqlSource:
        if (self.query is None) == (self.table is None):
            raise ValueError("an sql source needs exactly one of `query` and `table`")
        return self

    def reader(self) -> Reader:
        return SqlReader(self.url, self.query, table=self.table)

    def name(self) -> str:
        return self.table or "sql"


Source = Annotated[BuiltinSource | CsvSource | ParquetSource | SqlSource, Field(discriminator="source")]


class NodeSection(_Section):
    dataset: str | None = None
    holdout_fraction: float | None = Field(None, gt=0, lt=1)
    holdout_seed: int = Field(0, ge=0)
    evaluation_dataset: str | None = None
    learner: str | None = None
    learner_options: dict[str, Any] = Field(default_factory=dict)
    blas_threads: int | None = Field(1, ge=1)


class PolicySection(_Section):
    """What the node discloses to analytics tasks, and where it records every task; TOML types only.

    ``bounds`` are per column name, on every dataset of the node: the same name means the same quantity.
    """

    columns: list[Annotated[str, Field(min_length=1)]] | None = None
    min_rows: int | None = Field(None, ge=0, strict=True)
    max_bins: int = Field(DEFAULT_MAX_BINS, ge=1, strict=True)
    release_extrema: bool = Field(False, strict=True)
    bounds: dict[Annotated[str, Field(min_length=1)], tuple[float, float]] = Field(default_factory=dict)
    max_release_epsilon: float = Field(DEFAULT_MAX_RELEASE_EPSILON, gt=0, allow_inf_nan=False)
    audit_log: Path | None = None

    @field_validator("bounds")
    @classmethod
    def _finite_boxes(cls, bounds: dict[str, tuple[float, float]]) -> dict[str, tuple[float, float]]:
        for column, (low, high) in bounds.items():
            if not (math.isfinite(low) and math.isfinite(high) and low < high):
                raise ValueError(f"bounds of {column!r} must be finite with low < high; got [{low}, {high}]")
        return bounds


class PrivacySection(_Section):
    """``[privacy]``: the node's differential-privacy policy and lifetime budget (docs/privacy.md, "A node's budget").

    The budget is enforced by :class:`fedlearn.client.budget.NodeBudget` on the ledger file, the
    policy by :class:`fedlearn.client.node_privacy.NodePrivacy`; both refuse a task before any work.
    """

    epsilon_budget: float | None = Field(None, gt=0, allow_inf_nan=False)
    delta: float = Field(1e-5, gt=0, lt=1)
    ledger: Path | None = None
    require_differential_privacy: bool = Field(False, strict=True)
    min_noise_multiplier: float = Field(0.0, ge=0, allow_inf_nan=False)

    def ledger_path(self, node_name: str, directory: Path) -> Path:
        """The ledger file: the configured one, or ``NAME.privacy-ledger.json`` beside the node config."""
        return self.ledger if self.ledger is not None else directory / f"{node_name}.privacy-ledger.json"


class ScoringSection(_Section):
    """``[scoring]``: whether and where a coordinator's scoring tasks may write predictions on this node.

    The coordinator names only a table; the node decides the database (``write_url``, else the
    scored SQL dataset's own) and may refuse scoring altogether (``allow``, off by default).
    """

    allow: bool = Field(False, strict=True)
    write_url: str | None = Field(None, min_length=1)
    tables: list[Annotated[str, Field(min_length=1)]] | None = None
    max_package_bytes: int = Field(2**30, ge=1, strict=True)
    chunk_rows: int = Field(10_000, ge=1, le=1_000_000, strict=True)


class SecureAggregationSection(_Section):
    """How the node takes part in secure aggregation (docs/secure-aggregation.md, "In a deployment")."""

    require: bool = Field(False, strict=True)
    identity_key: Path | None = None
    peers: Path | None = None

    def identity_path(self, node_name: str, directory: Path) -> Path:
        """The identity key file: the configured one, or ``NAME.identity.key`` beside the node config."""
        return self.identity_key if self.identity_key is not None else directory / f"{node_name}.identity.key"


class AttackSection(BaseModel):
    """``[attack]``: this node is Byzantine, for red-team exercises (docs/robustness.md).

    ``name`` is an attack of :data:`fedlearn.client.attacks.ATTACKS`; every other key but
    ``shards`` and ``seed`` is one of its options. A real node knows only its own rows, so an
    attack that estimates benign updates (ALIE, IPM, min-max, min-sum) trains on ``shards``
    parts of them; options a simulation would fill in (ALIE's ``z`` or its ``nodes`` and
    ``byzantine``, the backdoor's ``boost``) must be given here.
    """

    model_config = ConfigDict(extra="allow", frozen=True)

    name: str
    shards: int = Field(4, ge=2, strict=True)
    seed: int = Field(0, ge=0, strict=True)

    def build(self) -> Attack:
        try:
            return build_attack(self.name, **dict(self.model_extra or {}))
        except ConfigError as exc:
            raise ConfigError(f"[attack]: {exc}") from None


class NodeConfig(_Section):
    node: NodeSection = Field(default_factory=NodeSection)
    policy: PolicySection = Field(default_factory=PolicySection)
    privacy: PrivacySection = Field(default_factory=PrivacySection)
    secure_aggregation: SecureAggregationSection = Field(default_factory=SecureAggregationSection)
    scoring: ScoringSection = Field(default_factory=ScoringSection)
    datasets: dict[str, Source] = Field(default_factory=dict)
    attack: AttackSection | None = None

    def training_dataset(self) -> str | None:
        """The dataset fit/evaluate use: the named one, or the only one there is."""
        if self.node.dataset is not None:
            if self.node.dataset not in self.datasets:
                raise ConfigError(
                    f"[node] dataset {self.node.dataset!r} is not declared; declared: {sorted(self.datasets)}"
                )
            return self.node.dataset
        if self.node.learner is None:
            return None
        if len(self.datasets) != 1:
            raise ConfigError(f"[node] dataset must name one of {sorted(self.datasets)} to train on")
        return next(iter(self.datasets))

    def fit_and_evaluation_rows(self, datasets: Mapping[str, Dataset]) -> tuple[Dataset, Dataset | None] | None:
        """The rows fit tasks train on and the rows evaluate tasks use (None: the training rows).

        None when the node does not train. Evaluating on rows the model trained on reports what it
        memorised, so a node that trains should hold rows back or name a dataset to evaluate on.
        """
        training = self.training_dataset()
        if training is None or self.node.learner is None:
            return None
        if self.node.holdout_fraction is not None:
            return hold_out(datasets[training], self.node.holdout_fraction, self.node.holdout_seed)
        if self.node.evaluation_dataset is not None:
            return datasets[training], datasets[self.node.evaluation_dataset]
        return datasets[training], None

    def check_evaluation(self) -> None:
        """Fail at start-up, not at the first evaluate task, on an impossible evaluation setting."""
        node = self.node
        if node.holdout_fraction is not None and node.evaluation_dataset is not None:
            raise ConfigError("[node] sets both holdout_fraction and evaluation_dataset; keep one")
        if node.evaluation_dataset is not None and node.evaluation_dataset not in self.datasets:
            name, declared = node.evaluation_dataset, sorted(self.datasets)
            raise ConfigError(f"[node] evaluation_dataset {name!r} is not declared; declared: {declared}")

    def trained_datasets(self) -> list[str]:
        """The datasets fit and evaluate tasks read, which the node loads when it starts."""
        names = [self.training_dataset(), self.node.evaluation_dataset] if self.node.learner is not None else []
        return [name for name in names if name is not None]

    def load_datasets(self, names: Collection[str] | None = None) -> Mapping[str, Dataset]:
        """Read the declared datasets, or those in ``names``, whole; runs once when the node starts."""
        return _load_all({k: v for k, v in self.datasets.items() if names is None or k in names})

    def analytics_data(
        self, loaded: Mapping[str, Dataset], names: Collection[str] | None = None
    ) -> dict[str, Dataset | DatasetTable]:
        """What analytics tasks read of the declared datasets (or those in ``names``): a dataset in ``loaded`` as
        loaded, any other from its source in chunks at each task (a database's current rows), never held in
        memory. Its column types are checked now."""
        data: dict[str, Dataset | DatasetTable] = {}
        for name, source in self.datasets.items():
            if names is not None and name not in names:
                continue
            try:
                data[name] = loaded[name] if name in loaded else source.streamed()
            except (ConfigError, SchemaError) as exc:
                raise ConfigError(f"dataset {name!r}: {exc}") from None
        return data


def load_node_config(path: str | Path) -> NodeConfig:
    raw = read_toml(path, what="node config file")
    if isinstance(raw.get("node"), dict) and "min_rows" in raw["node"]:
        raise ConfigError(f"{path}: [node] min_rows has moved to the [policy] section; write it there as min_rows")
    config = validate(NodeConfig, raw, source=str(path))
    if not config.datasets:
        raise ConfigError(f"{path}: declare at least one dataset under [datasets.NAME]")
    config.training_dataset()  # fail now, not at the first task
    config.check_evaluation()
    if config.attack is not None:
        if config.node.learner is None:
            raise ConfigError(f"{path}: [attack] needs a node that trains: set [node] learner")
        config.attack.build()
    return _relative_to(config, Path(path).parent)


def _relative_to(config: NodeConfig, directory: Path) -> NodeConfig:
    """Relative file names (audit log, ledger, identity key, peers) name files beside the config, wherever the
    node was started from."""

    def beside(path: Path | None) -> Path | None:
        return path if path is None or path.is_absolute() else directory / path

    policy, privacy, secure = config.policy, config.privacy, config.secure_aggregation
    return config.model_copy(
        update={
            "policy": policy.model_copy(update={"audit_log": beside(policy.audit_log)}),
            "privacy": privacy.model_copy(update={"ledger": beside(privacy.ledger)}),
            "secure_aggregation": secure.model_copy(
                update={"identity_key": beside(secure.identity_key), "peers": beside(secure.peers)}
            ),
        }
    )


class TrustedDataConfig(_Section):
    """``fedlearn coordinator --trusted-data FILE``: the coordinator's own clean data, as ``[datasets.NAME]``.

    FLTrust trains on it each round to judge the nodes' updates; it is the operator's data, never a node's.
    """

    datasets: dict[str, Source] = Field(default_factory=dict)


def load_trusted_data(path: str | Path) -> dict[str, Dataset]:
    """Every dataset a trusted-data file declares, read once when the coordinator starts."""
    config = validate(TrustedDataConfig, read_toml(path, what="trusted data file"), source=str(path))
    if not config.datasets:
        raise ConfigError(f"{path}: declare at least one dataset under [datasets.NAME]")
    try:
        return _load_all(config.datasets)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def _load_all(sources: Mapping[str, Source]) -> dict[str, Dataset]:
    """Every source read, a failure naming its dataset."""
    loaded = {}
    for name, source in sources.items():
        try:
            loaded[name] = source.load()
        except (ConfigError, SchemaError) as exc:
            raise ConfigError(f"dataset {name!r}: {exc}") from None
    return loaded
