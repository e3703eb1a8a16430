"""A node's config decides which of its rows fit tasks train on and which evaluate tasks score, what it
discloses to analytics tasks, and where it records every task."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from fedlearn.analytics import DisclosurePolicy
from fedlearn.client.learners import build_learner
from fedlearn.config import parse_config
from fedlearn.core.errors import ConfigError
from fedlearn.core.messages import FIT, SECAGG_KINDS, Task
from fedlearn.runtime.identity import load_or_create_identity, public_key_hex, registry_toml
from fedlearn.runtime.node_config import load_node_config
from fedlearn.runtime.node_runtime import build_node, secure_aggregation_setup
from fedlearn.simulation import plan_simulation
from tests.sql_tables import scratch_table

PG_URL = "postgresql://postgres@127.0.0.1:5432/test"
BUILTIN = """
[datasets.digits]
source = "builtin"
name = "digits"
nodes = 4
index = 2
seed = 7
"""


def _config(tmp_path: Path, node: str, extra: str = "") -> Path:
    path = tmp_path / "node.toml"
    path.write_text(f"[node]\nlearner = 'numpy.softmax'\n{node}\n{BUILTIN}{extra}")
    return path


def test_holdout_fraction_keeps_back_the_rows_the_simulated_twin_keeps_back(tmp_path: Path) -> None:
    config = load_node_config(_config(tmp_path, "holdout_fraction = 0.25\nholdout_seed = 7"))
    fit_rows, evaluation_rows = config.fit_and_evaluation_rows(config.load_datasets()) or (None, None)
    plan = plan_simulation(parse_config({"run": {"seed": 7}, "data": {"nodes": 4, "holdout_fraction": 0.25}}))

    assert fit_rows is not None and evaluation_rows is not None and plan.evaluation_data is not None
    np.testing.assert_array_equal(fit_rows.x, plan.partitions[2].x)
    np.testing.assert_array_equal(evaluation_rows.x, plan.evaluation_data[2].x)


def test_a_built_node_evaluates_with_its_held_out_rows(tmp_path: Path) -> None:
    config = load_node_config(_config(tmp_path, "holdout_fraction = 0.5"))
    node = build_node("n", config, config.load_datasets())

    assert node.app.evaluator is not None


def test_a_node_without_held_out_rows_evaluates_on_its_training_rows(tmp_path: Path) -> None:
    config = load_node_config(_config(tmp_path, ""))
    node = build_node("n", config, config.load_datasets())

    assert node.app.evaluator is None


def test_an_evaluation_dataset_is_a_declared_one(tmp_path: Path) -> None:
    extra = BUILTIN.replace("[datasets.digits]", "[datasets.later]").replace("index = 2", "index = 3")
    config = load_node_config(_config(tmp_path, "dataset = 'digits'\nevaluation_dataset = 'later'", extra))
    datasets = config.load_datasets()

    fit_rows, evaluation_rows = config.fit_and_evaluation_rows(datasets) or (None, None)

    assert fit_rows is datasets["digits"] and evaluation_rows is datasets["later"]


@pytest.mark.parametrize(
    ("node", "message"),
    [
        ("holdout_fraction = 0.2\nevaluation_dataset = 'digits'", "sets both holdout_fraction and evaluation_dataset"),
        ("evaluation_dataset = 'nope'", r"evaluation_dataset 'nope' is not declared; declared: \['digits'\]"),
        ("holdout_fraction = 1.5", r"\[node\] holdout_fraction: Input should be less than 1"),
    ],
)
def test_impossible_evaluation_settings_fail_at_start_up_with_one_line(tmp_path: Path, node: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_node_config(_config(tmp_path, node))


def test_the_policy_section_becomes_the_policy_the_analytics_handlers_enforce(tmp_path: Path) -> None:
    policy = "[policy]\ncolumns = ['pixel_0_1', 'y']\nmin_rows = 20\nmax_bins = 64\nrelease_extrema = true\n"
    config = load_node_config(_config(tmp_path, "", policy))

    disclosed = DisclosurePolicy(**config.policy.model_dump(exclude={"audit_log"}))

    assert disclosed == DisclosurePolicy(columns=["pixel_0_1", "y"], min_rows=20, max_bins=64, release_extrema=True)


def test_without_a_policy_section_a_node_withholds_extrema_and_caps_bins(tmp_path: Path) -> None:
    config = load_node_config(_config(tmp_path, ""))

    assert DisclosurePolicy(**config.policy.model_dump(exclude={"audit_log"})) == DisclosurePolicy()


@pytest.mark.parametrize(
    ("policy", "message"),
    [
        ("max_bins = 0", r"\[policy\] max_bins: Input should be greater than or equal to 1; got 0$"),
        ("release_extrema = 'yes'", r"\[policy\] release_extrema: Input should be a valid boolean; got 'yes'$"),
        ("columns = 'age'", r"\[policy\] columns: Input should be a valid list; got 'age'$"),
        ("min_rows = 2.5", r"\[policy\] min_rows: Input should be a valid integer; got 2.5$"),
        ("colums = ['age']", r"unknown key \[policy\] colums$"),
    ],
)
def test_a_bad_policy_fails_at_start_up_with_one_line(tmp_path: Path, policy: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_node_config(_config(tmp_path, "", f"[policy]\n{policy}\n"))


def test_the_old_node_min_rows_key_is_refused_saying_where_it_moved(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"node.toml: \[node\] min_rows has moved to the \[policy\] section"):
        load_node_config(_config(tmp_path, "min_rows = 20"))


def test_a_built_node_records_its_start_and_every_fit_task_in_its_audit_log(tmp_path: Path) -> None:
    log = tmp_path / "audit.jsonl"
    config = load_node_config(_config(tmp_path, "holdout_fraction = 0.25", f"[policy]\naudit_log = '{log}'\n"))
    datasets = config.load_datasets()
    node = build_node("n", config, datasets)
    params = build_learner("numpy.softmax", datasets["digits"]).init_params(0)

    node.handle(Task(kind=FIT, round=1, run_id="run-9", params=params, config={"seed": 0}))

    start, fit = (json.loads(line) for line in log.read_text().splitlines())
    assert (start["event"], start["policy"]["release_extrema"], start["policy"]["max_bins"]) == ("start", False, 1000)
    assert (fit["kind"], fit["run_id"], fit["dataset"], fit["outcome"]) == (FIT, "run-9", "digits", "released")
    assert fit["columns"][:2] == ["pixel_0_0", "pixel_0_1"] and fit["rows"] > 0
    assert fit["released"] == {name: list(shape) for name, (shape, _) in params.spec().items()}
    assert "loss" in fit["metrics"]


def test_a_relative_audit_log_lies_beside_the_node_config(tmp_path: Path) -> None:
    config = load_node_config(_config(tmp_path, "", extra="\n[policy]\naudit_log = 'logs/node.audit.jsonl'\n"))

    assert config.policy.audit_log == tmp_path / "logs" / "node.audit.jsonl"


# -- secure aggregation ------------------------------------------------------------------------------


def test_a_node_makes_its_identity_key_beside_its_config_and_mounts_the_secure_stages(tmp_path: Path) -> None:
    config = load_node_config(_config(tmp_path, ""))

    setup = secure_aggregation_setup("hospital-a", config, tmp_path)

    assert setup is not None and set(setup.handlers) == set(SECAGG_KINDS)
    key, created = load_or_create_identity(tmp_path / "hospital-a.identity.key")
    assert not created and setup.identity_key.hex() == public_key_hex(key)


def test_secure_aggregation_paths_are_relative_to_the_node_config(tmp_path: Path) -> None:
    config = load_node_config(
        _config(tmp_path, "", '\n[secure_aggregation]\nidentity_key = "keys/me.key"\npeers = "federation.toml"\n')
    )

    assert config.secure_aggregation.identity_key == tmp_path / "keys/me.key"
    assert config.secure_aggregation.peers == tmp_path / "federation.toml"


def test_a_node_that_requires_secure_aggregation_refuses_a_plain_fit(tmp_path: Path) -> None:
    config = load_node_config(_config(tmp_path, "", "\n[secure_aggregation]\nrequire = true\n"))
    node = build_node("hospital-a", config, config.load_datasets())
    params = build_learner("numpy.softmax", config.load_datasets()["digits"]).init_params(0)

    reply = node.handle(Task(kind=FIT, round=1, params=params))

    assert reply.error is not None and "refuses to send its update in the clear" in reply.error


def test_pinned_peers_that_do_not_name_this_nodes_own_key_are_refused_at_start_up(tmp_path: Path) -> None:
    (tmp_path / "federation.toml").write_text(registry_toml({"hospital-a": bytes(32)}))
    config = load_node_config(_config(tmp_path, "", '\n[secure_aggregation]\npeers = "federation.toml"\n'))

    with pytest.raises(ConfigError, match="does not pin this node's own identity key"):
        secure_aggregation_setup("hospital-a", config, tmp_path)


def test_a_node_that_cannot_keep_a_key_runs_without_secure_aggregation_unless_it_asked_for_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = load_node_config(_config(tmp_path, ""))
    unwritable = tmp_path / "absent"

    assert secure_aggregation_setup("hospital-a", config, unwritable) is None
    assert "takes no part in secure aggregation" in caplog.text
    required = load_node_config(_config(tmp_path, "", "\n[secure_aggregation]\nrequire = true\n"))
    with pytest.raises(ConfigError, match="cannot create the identity key"):
        secure_aggregation_setup("hospital-a", required, unwritable)


def test_an_unknown_secure_aggregation_key_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="requires"):
        load_node_config(_config(tmp_path, "", "\n[secure_aggregation]\nrequires = true\n"))


def test_a_node_with_an_attack_section_trains_as_a_byzantine_node_and_says_so_loudly(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = load_node_config(_config(tmp_path, "", '\n[attack]\nname = "sign_flip"\nscale = 2.0\n'))
    datasets = config.load_datasets()
    params = build_learner("numpy.softmax", datasets["digits"]).init_params(0)
    honest = build_node("n", load_node_config(_config(tmp_path, "")), datasets)
    task = Task(kind=FIT, round=1, params=params, config={"seed": 3})

    with caplog.at_level("WARNING"):
        node = build_node("n", config, datasets)
    sent, expected = node.handle(task).params, honest.handle(task).params

    assert "RED-TEAM EXERCISE" in caplog.text and "sign_flip (scale=2)" in caplog.text
    assert sent is not None and expected is not None
    np.testing.assert_allclose(
        sent["weight"] - params["weight"], -2.0 * (expected["weight"] - params["weight"]), atol=1e-6
    )


def test_a_lone_node_estimates_benign_statistics_from_shards_of_its_own_rows(tmp_path: Path) -> None:
    config = load_node_config(_config(tmp_path, "", '\n[attack]\nname = "alie"\nz = 1.0\nshards = 3\n'))
    node = build_node("n", config, config.load_datasets())
    params = build_learner("numpy.softmax", config.load_datasets()["digits"]).init_params(0)

    reply = node.handle(Task(kind=FIT, round=1, params=params, config={"seed": 3}))

    assert reply.error is None


@pytest.mark.parametrize(
    ("attack", "message"),
    [
        ('name = "sign_flip"\nfactor = 2.0', r"\[attack\]: unknown option\(s\) factor for attack 'sign_flip'"),
        ('name = "alie"', r"\[attack\]: attack 'alie' needs `z`, or `nodes` and `byzantine`"),
        ('name = "ipm"\nshards = 1', "shards"),
        ("scale = 2.0", "name"),
    ],
    ids=["option", "alie_without_z", "shards", "no_name"],
)
def test_a_bad_attack_section_fails_at_start_up_with_one_line(tmp_path: Path, attack: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_node_config(_config(tmp_path, "", f"\n[attack]\n{attack}\n"))


def test_a_parquet_dataset_with_declared_categories_loads(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"age": [30, 40], "smoker": ["never", "current"], "y": [0, 1]}), tmp_path / "v.parquet")
    path = tmp_path / "node.toml"
    path.write_text(
        f"[datasets.visits]\nsource = 'parquet'\npath = '{tmp_path / 'v.parquet'}'\ntarget = 'y'\nn_classes = 2\n"
        "batch_rows = 1\n[datasets.visits.columns]\nsmoker = ['never', 'former', 'current']\nage = 'int'\n"
    )

    visits = load_node_config(path).load_datasets()["visits"]

    assert visits.feature_names == ("age", "smoker=never", "smoker=former", "smoker=current")
    np.testing.assert_array_equal(visits.x, [[30, 1, 0, 0], [40, 0, 0, 1]])


def test_an_undeclared_text_column_fails_when_the_node_loads_its_data(tmp_path: Path) -> None:
    (tmp_path / "v.csv").write_text("age,smoker\n30,never\n")
    path = tmp_path / "node.toml"
    path.write_text(f"[datasets.visits]\nsource = 'csv'\npath = '{tmp_path / 'v.csv'}'\n")

    with pytest.raises(ConfigError, match=r"dataset 'visits': .*column 'smoker' is text; declare it as a category"):
        load_node_config(path).load_datasets()


@pytest.mark.parametrize(
    ("dataset", "words"),
    [
        ("source = 'sql'\nurl = 'sqlite://'\nquery = 'SELECT 1'\ntable = 't'", "exactly one of `query` and `table`"),
        ("source = 'parquet'\npath = 'v.parquet'\nrows = 5", "unknown key"),
        (
            "source = 'csv'\npath = 'v.csv'\ncolumns = { smoker = { type = 'category' } }",
            "needs its list of categories",
        ),
    ],
)
def test_a_bad_dataset_declaration_fails_when_the_config_is_read(tmp_path: Path, dataset: str, words: str) -> None:
    path = tmp_path / "node.toml"
    path.write_text(f"[datasets.visits]\n{dataset}\n")

    with pytest.raises(ConfigError, match=words):
        load_node_config(path)


def _sql_node(tmp_path: Path, table: str, learner: bool) -> Path:
    path = tmp_path / "node.toml"
    node = "[node]\nlearner = 'numpy.softmax'\ndataset = 'train'\n" if learner else ""
    train = f"[datasets.train]\nsource = 'csv'\npath = '{tmp_path / 't.csv'}'\ntarget = 'y'\nn_classes = 2\n"
    path.write_text(
        f"{node}{train}[datasets.visits]\nsource = 'sql'\nurl = '{PG_URL}'\ntable = '{table}'\ntarget = 'y'\n"
        "n_classes = 2\n[datasets.visits.columns]\nsmoker = ['never', 'current']\n"
    )
    (tmp_path / "t.csv").write_text("a,y\n1,0\n2,1\n")
    return path


@pytest.fixture
def pg_visits() -> Iterator[str]:
    with scratch_table(
        PG_URL, "visits", "age integer, smoker text, y integer", [(30, "never", 0), (61, "current", 1)]
    ) as name:
        yield name


def test_a_node_loads_what_it_trains_on_and_reads_the_rest_at_each_analytics_task(
    tmp_path: Path, pg_visits: str
) -> None:
    from sqlalchemy import create_engine, text

    from fedlearn.analytics import SummarySpec, accumulate
    from fedlearn.data.dataset_table import DatasetTable

    config = load_node_config(_sql_node(tmp_path, pg_visits, learner=True))
    loaded = config.load_datasets(config.trained_datasets())
    data = config.analytics_data(loaded)
    spec = SummarySpec(columns=("age", "smoker=current"), target="y")
    before = accumulate(data["visits"], spec).count
    engine = create_engine(PG_URL.replace("postgresql://", "postgresql+psycopg://"))
    with engine.begin() as conn:
        conn.execute(text(f"INSERT INTO {pg_visits} VALUES (45, 'current', 1)"))
    engine.dispose()

    assert list(loaded) == ["train"] and data["train"] is loaded["train"]
    assert isinstance(data["visits"], DatasetTable)
    assert data["visits"].schema() == {"age": "float", "smoker=never": "float", "smoker=current": "float", "y": "int"}
    assert (before, accumulate(data["visits"], spec).count) == (2, 3)


def test_a_streamed_dataset_summarises_exactly_as_its_loaded_twin(tmp_path: Path, pg_visits: str) -> None:
    from fedlearn.analytics import SummarySpec, accumulate

    config = load_node_config(_sql_node(tmp_path, pg_visits, learner=False))
    streamed = config.analytics_data({})["visits"]
    loaded = config.load_datasets()["visits"]
    spec = SummarySpec(columns=("smoker=current", "age"), target="y")

    np.testing.assert_array_equal(accumulate(streamed, spec).moments.mean, accumulate(loaded, spec).moments.mean)


def test_a_streamed_dataset_with_an_undeclared_text_column_fails_when_the_node_starts(
    tmp_path: Path, pg_visits: str
) -> None:
    path = _sql_node(tmp_path, pg_visits, learner=False)
    path.write_text(path.read_text().replace("smoker = ['never', 'current']", ""))

    with pytest.raises(ConfigError, match=r"dataset 'visits': .*column 'smoker' is text"):
        load_node_config(path).analytics_data({})


def test_a_node_answers_analytics_tasks_on_a_parquet_dataset_it_never_loads(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq
    from sklearn.linear_model import LinearRegression

    from fedlearn.analytics import AnalyticsJob, FederatedLinearRegression, analytics_handlers
    from fedlearn.client.node_app import NodeApp
    from fedlearn.simulation.inprocess import InProcessFleet

    rng = np.random.default_rng(0)
    age, smoker = rng.uniform(20, 80, 60), rng.choice(["never", "current"], 60)
    y = 0.5 * age + 3 * (smoker == "current") + rng.normal(size=60)
    pq.write_table(pa.table({"age": age, "smoker": smoker, "y": y}), tmp_path / "v.parquet", row_group_size=16)
    path = tmp_path / "node.toml"
    path.write_text(
        f"[datasets.visits]\nsource = 'parquet'\npath = '{tmp_path / 'v.parquet'}'\ntarget = 'y'\n"
        "task = 'regression'\nbatch_rows = 8\n[datasets.visits.columns]\nsmoker = ['never', 'current']\n"
    )
    config = load_node_config(path)
    handlers = analytics_handlers(config.analytics_data({}), policy=DisclosurePolicy(min_rows=0))
    fleet = InProcessFleet(["n"], lambda node_id: NodeApp(node_id=node_id, handlers=handlers))
    job = AnalyticsJob(columns=("age", "smoker=current"), target="y", fleet=fleet)

    assert job.join("n", "visits") == 60
    model = job.fit(FederatedLinearRegression())
    expected = LinearRegression().fit(np.column_stack([age, smoker == "current"]), y)
    np.testing.assert_allclose(model.coef_, expected.coef_, rtol=1e-4)
