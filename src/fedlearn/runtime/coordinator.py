"""The coordinator service: runs submitted runs over a fleet, one at a time, durably.

Runs live in the store. A submitted run is validated at once (a bad config is refused at submit
time, not when its turn comes), then queued. The worker thread takes runs in order, resumes any
that a previous coordinator left ``running`` from their last checkpoint, and checkpoints after
every round, so a coordinator killed at any instant resumes where it stopped. Nothing here knows
about HTTP: the API in ``fedlearn.web`` calls these methods.

Other work that sends tasks to the nodes (analytics) goes through :meth:`Coordinator.fleet_access`,
which the run worker honours between rounds: see :mod:`fedlearn.runtime.lease` for why only one
user may gather replies at a time.

Each run's life is logged at INFO, one line per event, so an operator can follow it in the
coordinator's log alone: submitted, started or resumed from round k, each round (with ε spent
under differential privacy), and completed, stopped or failed with the reason; likewise each use
of the nodes by other work (analytics).

Under differential privacy the run's ledger is part of its checkpoint, so a resumed run goes on
spending from what it had spent. A run whose next round would exceed its budget ends ``stopped``,
with the reason, like a run an operator stopped: its model and ledger are intact and it can
release nothing more. A run whose planned rounds exceed the budget never starts: it is
``failed`` with the engine's one-line reason and the error's name (``PrivacyError``).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Collection, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import replace

from fedlearn.config import DifferentialPrivacySection, RunConfig, parse_config
from fedlearn.core.config_files import parse_toml
from fedlearn.core.errors import BudgetExhausted, ConfigError, FedlearnError, RunStopped
from fedlearn.core.params import ParamSet
from fedlearn.data.dataset import Dataset
from fedlearn.engine.engine import Engine, RunState
from fedlearn.engine.fleet import Fleet
from fedlearn.engine.history import RoundRecord
from fedlearn.runtime.deployment import plan_deployment
from fedlearn.runtime.lease import FleetLease
from fedlearn.runtime.store import RunRecord, Store

logger = logging.getLogger(__name__)


class Coordinator:
    """Owns the run queue; ``start`` it, then ``submit`` runs from any thread."""

    def __init__(
        self,
        store: Store,
        fleet: Fleet,
        *,
        poll_interval: float = 0.5,
        allowed_learners: Collection[str] = (),
        trusted_datasets: Mapping[str, Dataset] | None = None,
    ) -> None:
        """``trusted_datasets`` are the operator's own data, for defences that train on it (FLTrust)."""
        self.store = store
        self.fleet = fleet
        self._poll_interval = poll_interval
        self._allowed_learners = frozenset(allowed_learners)
        self._trusted = dict(trusted_datasets or {})
        self._wake = threading.Event()
        self._closing = threading.Event()
        self._thread: threading.Thread | None = None
        self._lease = FleetLease()
        self.current_run: str | None = None

    # -- operator actions -------------------------------------------------------------------

    def submit(self, config_toml: str) -> RunRecord:
        """Validate and queue a run; a bad config raises ``ConfigError`` and stores nothing."""
        config = self._parse(config_toml)
        plan_deployment(config, run_id="validation", allowed_learners=self._allowed_learners, trusted=self._trusted)
        run_id = self.store.create_run(config.run.name, config_toml, seed=config.run.seed, rounds=config.run.rounds)
        logger.info("run %s (%s): submitted, %d rounds", run_id, config.run.name, config.run.rounds)
        self._wake.set()
        return self.store.get_run(run_id)

    def stop(self, run_id: str) -> RunRecord:
        """Ask a run to stop after its current round; a queued run stops at once."""
        run = self.store.get_run(run_id)
        if run.status == "pending":
            self.store.set_run_status(run_id, "stopped", "stopped before it started")
            logger.info("run %s: stopped before it started", run_id)
        elif run.status == "running":
            self.store.request_stop(run_id)
            logger.info("run %s: stop requested; it stops after its current round", run_id)
        return self.store.get_run(run_id)

    def resume(self, run_id: str) -> RunRecord:
        """Queue a failed run again; it resumes from its last checkpoint (or starts, if it has none).

        The config is checked again first: a run that failed on a learner or option the coordinator
        no longer accepts is refused here rather than failing a second time.
        """
        run = self.store.get_run(run_id)
        if run.status != "failed":
            raise ConfigError(f"run {run_id} is {run.status}; only a failed run can be resumed")
        plan_deployment(
            self._parse(run.config_toml), run_id=run_id, allowed_learners=self._allowed_learners, trusted=self._trusted
        )
        self.store.reopen_run(run_id, f"resume requested after round {run.rounds_done}")
        logger.info("run %s: resume requested after round %d", run_id, run.rounds_done)
        self._wake.set()
        return self.store.get_run(run_id)

    def privacy_config(self, run: RunRecord) -> DifferentialPrivacySection | None:
        """The run's ``[privacy.differential_privacy]`` when it enables DP, else None.

        A stored config that no longer parses (written for another fedlearn) gives None rather than
        an error, so the run can still be shown.
        """
        try:
            section = self._parse(run.config_toml).privacy.differential_privacy
        except ConfigError:
            return None
        return section if section.enabled else None

    def final_params(self, run_id: str) -> ParamSet | None:
        state = self.store.load_checkpoint(run_id)
        return None if state is None else state.params

    @contextmanager
    def fleet_access(self, *, wait: float, purpose: str) -> Iterator[Fleet]:
        """The fleet, for the ``with`` block only, with no run gathering from it meanwhile.

        A running run lends the nodes out at its next round boundary. If they are not free within
        ``wait`` seconds this raises :class:`~fedlearn.runtime.lease.FleetBusy` naming the run;
        ``purpose`` (e.g. "an analytics request") is how others waiting are told who holds them.
        """
        logger.info("%s: waiting up to %g s for the nodes", purpose, wait)
        with self._lease.borrow(purpose, wait):
            logger.info("%s: has the nodes", purpose)
            try:
                yield self.fleet
            except Exception as exc:
                logger.info("%s: failed: %s", purpose, exc)
                raise
            logger.info("%s: done", purpose)

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> None:
        self.store.mark_all_nodes_offline()  # a killed predecessor left them marked online
        self._thread = threading.Thread(target=self._loop, name="fedlearn-coordinator", daemon=True)
        self._thread.start()

    def close(self, timeout: float = 10.0) -> None:
        self._closing.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _loop(self) -> None:
        while not self._closing.is_set():
            run = self._next_run()
            if run is None:
                self._wake.wait(self._poll_interval)
                self._wake.clear()
                continue
            self._execute(run)

    def _next_run(self) -> RunRecord | None:
        resumable = self.store.runs_to_resume()
        if resumable:
            return resumable[0]
        pending = sorted(self.store.list_runs(status="pending"), key=lambda r: r.created_at)
        return pending[0] if pending else None

    def _execute(self, run: RunRecord) -> None:
        self.current_run = run.id
        try:
            self._take_fleet(run.id)
            config = self._parse(run.config_toml)
            plan = plan_deployment(
                config, run_id=run.id, allowed_learners=self._allowed_learners, trusted=self._trusted
            )
            engine = Engine(
                self.fleet,
                plan.strategy,
                replace(plan.engine, declared_examples=self.store.declared_rows()),
                checkpoint=lambda s: self.store.save_checkpoint(run.id, s),
                reserve=lambda number, ledger: self.store.reserve_privacy(run.id, number, ledger),
                on_round=lambda record: self._between_rounds(run.id, record),
                identity_keys=self.store.identity_keys,
            )
            # No local may hold the first state: the engine replaces it every round, and a
            # reference kept here would keep its parameters, a whole model, alive all run long.
            final: RunState = engine.run(self._first_state(run.id, engine, plan.learner.init_params, config.run.seed))
            self.store.set_run_status(run.id, "completed", f"{final.round} rounds")
            logger.info("run %s: completed after %d rounds", run.id, final.round)
        except _ShuttingDown:
            logger.info("run %s: left running for the next coordinator to resume", run.id)
        except RunStopped:
            self.store.set_run_status(run.id, "stopped", "stopped by an operator")
            logger.info("run %s: stopped by an operator", run.id)
        except BudgetExhausted as exc:  # a clean end, not a failure: the last checkpoint holds model and ledger
            reason = f"privacy budget exhausted: {exc}"
            self.store.set_run_status(run.id, "stopped", reason)
            logger.info("run %s: stopped: %s", run.id, reason)
        except FedlearnError as exc:  # recorded by name too, so `fedlearn run` exits with this error's code
            self.store.set_run_status(run.id, "failed", str(exc), error=type(exc).__name__)
            logger.warning("run %s: failed: %s", run.id, exc)
        except Exception as exc:  # keep serving other runs; the reason is recorded for the operator
            logger.exception("run %s failed unexpectedly", run.id)
            self.store.set_run_status(run.id, "failed", f"internal error: {type(exc).__name__}: {exc}")
        finally:
            self._lease.release(_holder(run.id))
            self.current_run = None

    def _first_state(self, run_id: str, engine: Engine, init_params: Callable[[int], ParamSet], seed: int) -> RunState:
        """The run's last checkpoint, or its initial state; either way the run is now running."""
        state = self.store.load_checkpoint(run_id)
        self.store.set_run_status(run_id, "running", "resumed" if state else "")
        if state is None:
            logger.info("run %s: started", run_id)
            state = engine.initial_state(init_params(seed))
        else:
            logger.info("run %s: resumed after round %d from its checkpoint", run_id, state.round)
        reserved = self.store.reserved_privacy(run_id)
        if reserved is not None and reserved[0] > state.round:  # a round that began releasing, then was lost
            logger.info("run %s: round %d was cut short; its privacy stays spent", run_id, reserved[0])
            state = replace(state, ledger=reserved[1])
        return state

    def _take_fleet(self, run_id: str) -> None:
        """Wait for the fleet (someone may have borrowed it); give up only when shutting down."""
        while not self._lease.hold(_holder(run_id), self._poll_interval):
            if self._closing.is_set():
                raise _ShuttingDown

    def _between_rounds(self, run_id: str, record: RoundRecord) -> None:
        left_out = f", {len(record.failures)} left out" if record.failures else ""
        spent = f", ε = {record.epsilon:.4g} spent" if record.epsilon is not None else ""
        logger.info("run %s: round %d done, %d of %d replies%s%s", run_id, record.round, record.replies,
                    record.sampled, left_out, spent)  # fmt: skip
        if self._closing.is_set() or self.store.stop_requested(run_id):
            if self._closing.is_set():
                raise _ShuttingDown
            raise RunStopped(f"run {run_id} stopped after round {record.round}")
        if self._lease.contended:  # the engine is between rounds, not gathering: safe to lend the nodes
            logger.info("run %s: lending the nodes out after round %d", run_id, record.round)
            self._lease.release(_holder(run_id))
            self._take_fleet(run_id)

    @staticmethod
    def _parse(config_toml: str) -> RunConfig:
        return parse_config(parse_toml(config_toml, source="run config"), source="run config")


def _holder(run_id: str) -> str:
    return f"training run {run_id}"


class _ShuttingDown(Exception):
    """Leaves a run ``running`` (checkpointed) so the next coordinator resumes it."""
