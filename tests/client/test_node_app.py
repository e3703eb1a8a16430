"""NodeApp: dispatch by task kind, and a node that never crashes on a bad task."""

from __future__ import annotations

import numpy as np
import pytest

from fedlearn.client import NodeApp, softmax_regression
from fedlearn.client.local_sgd import CLIENT_CONTROL_KEY
from fedlearn.client.trainer import EvalResult, FitResult, NodeState
from fedlearn.core.errors import ConfigError
from fedlearn.core.messages import CONTROL_DELTA_PREFIX, CONTROL_PREFIX, EVALUATE, FIT, Config, Reply, Task
from fedlearn.core.params import ParamSet
from tests.client.conftest import tiny_classification

PARAMS = ParamSet({"w": np.zeros(3, dtype=np.float32)})


class EchoTrainer:
    """Returns the parameters plus one; written against the three-argument ``fit``."""

    def fit(self, params: ParamSet, config: Config, state: NodeState) -> FitResult:
        return FitResult(params=params.map(lambda a: a + 1), num_examples=4, metrics={"loss": 0.5})

    def evaluate(self, params: ParamSet, config: Config) -> EvalResult:
        return EvalResult(loss=0.25, num_examples=4, metrics={"accuracy": 0.75})


class RaisingTrainer:
    def fit(self, params: ParamSet, config: Config, state: NodeState) -> FitResult:
        raise ValueError("shapes (3,) and (4,) not aligned\nsecond line of detail")

    def evaluate(self, params: ParamSet, config: Config) -> EvalResult:
        raise ZeroDivisionError


class WrongShapeTrainer(EchoTrainer):
    def fit(self, params: ParamSet, config: Config, state: NodeState) -> FitResult:
        return FitResult(params=ParamSet({"w": np.zeros(5, dtype=np.float32)}), num_examples=4)


def app(trainer: object, **kwargs: object) -> NodeApp:
    return NodeApp(node_id="node-7", trainer=trainer, **kwargs)  # type: ignore[arg-type]


def test_fit_task_becomes_a_reply_with_trained_params() -> None:
    reply = app(EchoTrainer()).handle(Task(kind=FIT, round=3, params=PARAMS))
    assert (reply.ok, reply.node_id, reply.kind, reply.round, reply.num_examples) == (True, "node-7", FIT, 3, 4)
    assert np.array_equal(reply.params["w"], np.ones(3))
    assert reply.metrics == {"loss": 0.5}


def test_evaluate_reply_metrics_include_loss() -> None:
    reply = app(EchoTrainer()).handle(Task(kind=EVALUATE, round=3, params=PARAMS))
    assert reply.ok
    assert reply.metrics == {"accuracy": 0.75, "loss": 0.25, "heldout": 0.0}
    assert len(reply.params) == 0


def test_raising_trainer_becomes_a_one_line_error_reply() -> None:
    reply = app(RaisingTrainer()).handle(Task(kind=FIT, round=2, params=PARAMS))
    assert not reply.ok
    assert reply.error == "ValueError: shapes (3,) and (4,) not aligned"
    assert (reply.node_id, reply.kind, reply.round) == ("node-7", FIT, 2)


def test_exception_without_message_still_names_its_type() -> None:
    reply = app(RaisingTrainer()).handle(Task(kind=EVALUATE, round=1, params=PARAMS))
    assert reply.error == "ZeroDivisionError: (no message)"


def test_trainer_returning_the_wrong_shape_is_an_error_reply() -> None:
    reply = app(WrongShapeTrainer()).handle(Task(kind=FIT, round=1, params=PARAMS))
    assert reply.error is not None
    assert "trained parameters parameter 'w' has shape (5,); expected (3,)" in reply.error


def test_unknown_kind_is_an_error_naming_it_and_the_known_kinds() -> None:
    reply = app(EchoTrainer(), handlers={"stats": lambda task, node: None}).handle(Task(kind="secagg/share", round=1))
    assert reply.error == "unknown task kind 'secagg/share'; this node handles ['fit', 'evaluate', 'stats']"


def test_registered_handler_answers_its_kind_and_sees_the_app() -> None:
    def count(task: Task, node: NodeApp) -> Reply:
        return Reply(node_id=node.node_id, kind=task.kind, round=task.round, num_examples=11)

    reply = app(EchoTrainer(), handlers={"count": count}).handle(Task(kind="count", round=5))
    assert (reply.ok, reply.num_examples, reply.node_id) == (True, 11, "node-7")


def test_handler_returning_something_else_is_an_error_reply() -> None:
    reply = app(EchoTrainer(), handlers={"count": lambda task, node: 11}).handle(Task(kind="count", round=5))
    assert reply.error == "handler for 'count' returned int, not a Reply"


def test_handlers_cannot_replace_fit_or_evaluate() -> None:
    with pytest.raises(ConfigError, match=r"must not replace the built-in task kinds; got handlers for \['fit'\]"):
        app(EchoTrainer(), handlers={FIT: lambda task, node: None})


def test_scaffold_extras_reach_the_trainer_and_state_persists_between_tasks() -> None:
    learner = softmax_regression(5, 3)
    params = learner.init_params(0)
    node = app(learner.trainer(tiny_classification()))
    extras = params.zeros_like().with_prefix(CONTROL_PREFIX)
    task = Task(kind=FIT, round=1, params=params, config={"scaffold": True, "seed": 0}, extras=extras)
    first = node.handle(task)
    assert first.ok, first.error
    assert set(first.extras) == {CONTROL_DELTA_PREFIX + k for k in params}
    assert node.state[CLIENT_CONTROL_KEY].bitwise_equal(first.extras.select(CONTROL_DELTA_PREFIX))
    second = node.handle(task)
    assert not second.params.bitwise_equal(first.params)  # c_i from round one now corrects the gradient


def test_node_without_trainer_refuses_fit_and_names_what_it_handles() -> None:
    def summarize(task: Task, node: NodeApp) -> Reply:
        return Reply(node_id=node.node_id, kind=task.kind, round=task.round)

    app = NodeApp(node_id="n", handlers={"analytics.summarize": summarize})

    reply = app.handle(Task(kind="fit", round=1, params=ParamSet()))

    assert reply.error == "unknown task kind 'fit'; this node handles ['analytics.summarize']"
    assert app.handle(Task(kind="analytics.summarize", round=1)).ok


def test_the_audit_hook_sees_every_task_with_its_reply_refusals_included() -> None:
    seen: list[tuple[str, str | None]] = []
    node = app(EchoTrainer(), audit=lambda task, reply: seen.append((task.kind, reply.error)))

    answered = node.handle(Task(kind=FIT, round=1, params=PARAMS))
    node.handle(Task(kind="steal", round=2))

    assert answered.ok
    assert seen == [(FIT, None), ("steal", "unknown task kind 'steal'; this node handles ['fit', 'evaluate']")]


def test_a_reply_the_audit_hook_cannot_record_is_withheld() -> None:
    def broken(task: Task, reply: Reply) -> None:
        raise OSError("disk full")

    reply = app(EchoTrainer(), audit=broken).handle(Task(kind=FIT, round=1, params=PARAMS))

    assert reply.error == "the node could not record this task in its audit log, so it released nothing"
    assert len(reply.params) == 0
