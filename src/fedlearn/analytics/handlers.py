"""Node-side task handlers for analytics, to plug into ``NodeApp(handlers=...)``.

Every handler names the dataset it reads in the task config (``dataset``), reads it in chunks
and replies with a flat parameter set; nothing but summaries, schema codes and Newton sums
leaves the node. Task kinds and their config:

``analytics.schema``
    ``columns``: JSON list. Replies ``types``: one code per requested column, an index into
    :data:`~fedlearn.analytics.sources.TYPES` (0 = missing, or not allowed: the two look the
    same). Other columns stay private.
``analytics.summarize``
    ``spec``: :class:`SummarySpec` JSON. Replies the summary's parameters, computed by the
    dataset's own database where it can (:mod:`~fedlearn.analytics.pushdown`). With ``remaining``
    (a dataset name) the summarised rows are being *removed*: the node also scans the rows it
    keeps and replies their counts, extrema and R factor under ``remaining/``
    (:func:`~fedlearn.analytics.scan.rescan`, in the database where it can be).
``analytics.logistic_step``
    ``spec``, ``classes`` (JSON list of integer codes), ``fit_intercept``; task params ``theta``
    and, optionally, the :class:`~fedlearn.analytics.logistic.FeatureScaling` ``shift`` and
    ``scale`` to apply to the features first. Replies
    :class:`~fedlearn.analytics.logistic.NewtonStats` parameters.
``analytics.secure_moments``
    ``spec`` (no histograms), ``classes`` (JSON list of integer codes; empty for regression),
    ``pass`` (1 or 2); for pass 2 the task params ``mean`` and ``class_means`` from pass 1. Replies
    ``vector``, the node's moments as plain sums (:mod:`~fedlearn.analytics.secure_moments`). It is
    only answered inside secure aggregation's masked-input stage, which masks the vector before it
    leaves: a task of this kind sent on its own is refused.

``analytics.summarize`` with ``dp.noise_multiplier`` and ``dp.delta`` (differential privacy)
    ``spec``; ``classes`` (JSON list of integer codes) when ``spec.by_class``; ``histograms_only``
    (bool) to release only the histogram cells. The node clips each row into its policy's
    ``bounds``, charges the release to its lifetime ``budget`` (nothing is computed or released if
    the budget refuses) and replies the noisy sums of :func:`~fedlearn.analytics.noisy.noisy_release`
    with the release's ``epsilon``. Its reply's example count is 0: the exact count is not released.

With ``require_dp`` the node releases no noiseless statistic: a summary without ``dp.*``, a
Newton step, secure moments (exact sums) and the rescan of a removal are refused with the reason,
and a schema reply shows ``float`` for each allowed column the node has bounds for and
``missing`` for every other, from its policy alone (inferred types are a function of the rows).

Every task passes the node's :class:`~fedlearn.analytics.policy.DisclosurePolicy`: a column it
does not allow is refused as if it did not exist, histogram bins are capped before any is
allocated, and every reply that summarises rows is released under the policy (``min_rows`` for
the summary, its classes and its histogram cells; extrema only where allowed).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import numpy as np
from numpy.typing import NDArray

from fedlearn.analytics.logistic import FeatureScaling, logistic_stats
from fedlearn.analytics.noisy import PrivacyBudget, noisy_release
from fedlearn.analytics.policy import DEFAULT_POLICY, DisclosurePolicy, check_counts
from fedlearn.analytics.pushdown import rescan_source, summarize_source
from fedlearn.analytics.scan import chunks_of
from fedlearn.analytics.secure_moments import SecureMomentsLayout, first_pass, second_pass
from fedlearn.analytics.sources import DEFAULT_CHUNK_ROWS, TYPES, Table, as_table
from fedlearn.analytics.summary import SummarySpec
from fedlearn.client.node_app import Handler, NodeApp
from fedlearn.client.node_privacy import NoiseFactory, system_noise
from fedlearn.core.checks import BOOL, POSITIVE, check, check_real
from fedlearn.core.errors import ConfigError, PrivacyError
from fedlearn.core.limits import DEFAULT_MAX_NEWTON_COEFFICIENTS
from fedlearn.core.messages import (
    ANALYTICS_LOGISTIC_STEP,
    ANALYTICS_SCHEMA,
    ANALYTICS_SECURE_MOMENTS,
    ANALYTICS_SUMMARIZE,
    DP_DELTA_KEY,
    DP_NOISE_MULTIPLIER_KEY,
    SECURE_CONTRIBUTION_KEY,
    Reply,
    Task,
)
from fedlearn.core.params import ParamSet
from fedlearn.data.dataset import Dataset
from fedlearn.privacy.ledger import Charge

# The task kinds, defined once in core.messages beside the other kinds, under analytics' own names.
SCHEMA = ANALYTICS_SCHEMA
SUMMARIZE = ANALYTICS_SUMMARIZE
LOGISTIC_STEP = ANALYTICS_LOGISTIC_STEP
SECURE_MOMENTS = ANALYTICS_SECURE_MOMENTS


def config_str(task: Task, key: str) -> str:
    value = task.config.get(key)
    if not isinstance(value, str) or not value:
        raise ConfigError(f"task {task.kind!r} needs config {key!r} as a non-empty string; got {value!r}")
    return value


def config_list(task: Task, key: str) -> list[Any]:
    try:
        value = json.loads(config_str(task, key))
    except json.JSONDecodeError as exc:
        raise ConfigError(f"task config {key!r} must be a JSON list: {exc}") from exc
    if not isinstance(value, list):
        raise ConfigError(f"task config {key!r} must be a JSON list; got {type(value).__name__}")
    return value


def declared_classes(task: Task, spec: SummarySpec, *, limit: int) -> tuple[int, ...]:
    """The task's ``classes`` (ascending integer codes) for a per-class DP release; none for a regression."""
    if not spec.by_class:
        if "classes" in task.config:
            raise ConfigError("task config 'classes' is only for per-class statistics (`by_class` in the spec)")
        return ()
    classes = config_list(task, "classes")
    if not classes or any(isinstance(c, bool) or not isinstance(c, int) for c in classes):
        raise ConfigError(f"task config 'classes' must list integer class codes; got {classes!r}")
    if sorted(set(classes)) != classes:
        raise ConfigError(f"task config 'classes' must be unique and ascending; got {classes!r}")
    if len(classes) > limit:
        raise ConfigError(f"refusing {len(classes)} classes: this node allows at most {limit} (`max_bins`)")
    return tuple(classes)


def _coefficients(task: Task, spec: SummarySpec, n_classes: int, *, fit_intercept: bool) -> NDArray[np.float64]:
    """The task's ``theta``, once its shape fits the spec and classes and its Hessian fits the node's bound."""
    if "theta" not in task.params:
        raise ConfigError("task params must carry the coefficients 'theta'")
    theta = np.asarray(task.params["theta"], dtype=np.float64)
    shape = (1 if n_classes == 2 else n_classes, spec.n_features + int(fit_intercept))
    if theta.shape != shape:
        raise ConfigError(f"task params 'theta' must have shape {shape} for {n_classes} classes; got {theta.shape}")
    cap = DEFAULT_MAX_NEWTON_COEFFICIENTS
    if theta.size > cap:
        raise ConfigError(
            f"refusing a Newton step over {theta.size} coefficients: this node computes at most {cap}, "
            f"whose Hessian alone takes {cap**2 * 8 // 10**6} MB"
        )
    return theta


def _counting_classes(chunks: Iterable[NDArray[np.float64]], counts: Counter[float]) -> Iterator[NDArray[np.float64]]:
    """``chunks`` unchanged, adding the rows of each value of their last column (the classes) to ``counts``.

    A Newton step's gradient holds a sum per class, so each class must reach the threshold, as in a summary.
    """
    for chunk in chunks:
        values, rows = np.unique(chunk[:, -1], return_counts=True)
        counts.update(dict(zip(values.tolist(), rows.tolist(), strict=True)))
        yield chunk


def audit_fields(task: Task, reply: Reply) -> dict[str, Any]:
    """What an analytics task touched, for the node's audit log: its datasets, columns and bins, and extrema.

    Reads only the task's own config, so a request too malformed to parse is recorded with
    what could be read, beside the reply's reason.
    """
    fields: dict[str, Any] = {"dataset": task.config.get("dataset")}
    if "remaining" in task.config:
        fields["remaining"] = task.config["remaining"]
    try:
        if task.kind == SCHEMA:
            fields["columns"] = [str(c) for c in config_list(task, "columns")]
        else:
            spec = SummarySpec.from_json(config_str(task, "spec"))
            fields["columns"] = list(spec.all_columns)
            if spec.histograms:
                fields["bins"] = sum(h.bins for h in spec.histograms)
    except ConfigError:
        pass
    if DP_NOISE_MULTIPLIER_KEY in task.config:
        fields["dp"] = {
            "noise_multiplier": task.config.get(DP_NOISE_MULTIPLIER_KEY),
            "delta": task.config.get(DP_DELTA_KEY),
        }
        if reply.ok and "epsilon" in reply.params:
            fields["dp"]["epsilon"] = float(reply.params["epsilon"])
    if reply.ok and "moments/min" in reply.params:
        fields["extrema"] = "withheld" if np.isnan(reply.params["moments/min"]).all() else "released"
    return fields


def analytics_handlers(
    datasets: Mapping[str, Dataset | Table | Mapping[str, Any]],
    *,
    policy: DisclosurePolicy = DEFAULT_POLICY,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    budget: PrivacyBudget | None = None,
    require_dp: bool = False,
    noise: NoiseFactory = system_noise,
) -> dict[str, Handler]:
    """Handlers answering analytics tasks from the node's named ``datasets`` under its ``policy``.

    ``datasets`` is read at each task, so a node that registers new data later is seen. A
    ``Dataset``'s targets answer to the column name ``y``; wrap it with
    :func:`~fedlearn.analytics.sources.table_from_dataset` to choose another. ``policy`` is
    this node's :class:`~fedlearn.analytics.policy.DisclosurePolicy`; the default allows every
    column, refuses summaries of fewer rows than the number of features plus 5 and withholds extrema.

    Differential privacy: ``budget`` is the node's lifetime budget, charged with every DP release
    before it is computed (None: releases are capped only by the policy's ``max_release_epsilon``);
    ``require_dp`` refuses every task that would release a noiseless statistic; ``noise`` gives the
    noise source for a task: the OS's secure source by default, a seeded one only in simulation.
    """
    check("require_dp", require_dp, BOOL)

    def noiseless(task: Task) -> None:
        if require_dp:
            raise PrivacyError(
                f"this node requires differential privacy and releases no noiseless statistic; refusing {task.kind} "
                f"without noise (ask for a summary with {DP_NOISE_MULTIPLIER_KEY!r} and {DP_DELTA_KEY!r}, "
                "e.g. from a PrivateAnalyticsJob)"
            )

    def table(task: Task, key: str = "dataset") -> Table:
        name = config_str(task, key)
        if name not in datasets:
            raise ConfigError(f"this node has no dataset {name!r}; it has {sorted(datasets)}")
        return as_table(datasets[name])

    def requested(task: Task, key: str = "dataset") -> tuple[SummarySpec, Table]:
        """The task's spec and the table it names, once the policy allows the request."""
        spec = SummarySpec.from_json(config_str(task, "spec"))
        source = table(task, key)
        policy.check_request(spec, source.schema())
        return spec, source

    def schema(task: Task, app: NodeApp) -> Reply:
        columns = [str(c) for c in config_list(task, "columns")]
        visible = policy.visible(table(task).schema())
        if require_dp:  # from the policy alone: a type inferred from the values would be a noiseless statistic
            visible = {c: "float" for c in visible if c in policy.bounds}
        codes = np.array([TYPES.index(visible.get(c, "missing")) for c in columns], dtype=np.int8)
        return Reply(node_id=app.node_id, kind=task.kind, round=task.round, params=ParamSet({"types": codes}))

    def private_summary(task: Task, app: NodeApp) -> Reply:
        if "remaining" in task.config:
            raise PrivacyError(
                "rows are not removed from a differentially private summary: the rescan of the rows kept is "
                "exact; ask for a fresh DP summary instead"
            )
        spec = SummarySpec.from_json(config_str(task, "spec"))
        source = table(task)
        classes = declared_classes(task, spec, limit=policy.max_bins)
        histograms_only = check("histograms_only", task.config.get("histograms_only", False), BOOL)
        if histograms_only and not spec.histograms:
            raise ConfigError("task config 'histograms_only' needs histograms in the spec")
        delta = check_real("delta", task.config.get(DP_DELTA_KEY), POSITIVE)
        low, high, z, epsilon = policy.check_private_request(
            spec, source.schema(), noise_multiplier=task.config.get(DP_NOISE_MULTIPLIER_KEY), delta=delta
        )
        if budget is not None:  # charged before a row is read: a refusal releases nothing
            what = "histogram" if histograms_only else "summary"
            budget.spend(
                Charge(noise_multiplier=z),
                delta=delta,
                what=f"analytics DP {what} of {config_str(task, 'dataset')!r}: {', '.join(spec.all_columns)}",
            )
        params = noisy_release(
            chunks_of(source, spec, chunk_rows=chunk_rows), spec, classes=classes, low=low, high=high,
            noise_multiplier=z, source=noise(task), histograms_only=histograms_only,
        )  # fmt: skip
        params = params.merged(ParamSet({"epsilon": np.asarray(epsilon)}))
        return Reply(node_id=app.node_id, kind=task.kind, round=task.round, params=params)

    def summarise(task: Task, app: NodeApp) -> Reply:
        if DP_NOISE_MULTIPLIER_KEY in task.config:
            return private_summary(task, app)
        noiseless(task)
        spec, source = requested(task)
        # a class is a cell like a bin: the node's `max_bins` bounds the classes the database may group into
        summary = policy.release(summarize_source(source, spec, chunk_rows=chunk_rows, max_classes=policy.max_bins))
        params = summary.to_params()
        if "remaining" in task.config:
            _, kept = requested(task, "remaining")
            rest = rescan_source(kept, spec, chunk_rows=chunk_rows, max_classes=policy.max_bins)
            remaining = policy.release_rescan(rest, spec)
            params = params.merged(remaining.with_prefix("remaining/"))
        return Reply(node_id=app.node_id, kind=task.kind, round=task.round, params=params, num_examples=summary.count)

    def logistic_step(task: Task, app: NodeApp) -> Reply:
        noiseless(task)
        spec, source = requested(task)
        classes = np.array(config_list(task, "classes"), dtype=np.int64)
        fit_intercept = task.config.get("fit_intercept", True)
        if not isinstance(fit_intercept, bool):
            raise ConfigError(f"task config 'fit_intercept' must be a bool; got {fit_intercept!r}")
        theta = _coefficients(task, spec, len(classes), fit_intercept=fit_intercept)
        scaled = "shift" in task.params or "scale" in task.params
        class_counts: Counter[float] = Counter()
        stats = logistic_stats(
            _counting_classes(chunks_of(source, spec, chunk_rows=chunk_rows), class_counts),
            theta,
            classes,
            fit_intercept=fit_intercept,
            scaling=FeatureScaling.from_params(task.params, spec.n_features) if scaled else None,
        )
        policy.check_newton(stats.count, class_counts, spec)
        return Reply(
            node_id=app.node_id, kind=task.kind, round=task.round, params=stats.to_params(), num_examples=stats.count
        )

    def secure_moments(task: Task, app: NodeApp) -> Reply:
        if not task.config.get(SECURE_CONTRIBUTION_KEY):
            raise PrivacyError(f"{SECURE_MOMENTS} is answered only inside secure aggregation, masked; refusing")
        noiseless(task)  # a secure sum is exact: the pooled total is noiseless
        spec, source = requested(task)
        layout = SecureMomentsLayout(spec, tuple(int(c) for c in config_list(task, "classes")))
        chunks = chunks_of(source, spec, chunk_rows=chunk_rows)
        number = task.config.get("pass")
        if number == 1:
            vector, class_counts = first_pass(chunks, layout)
            count = int(vector[0])
        elif number == 2:
            if "mean" not in task.params or "class_means" not in task.params:
                raise ConfigError("pass 2 needs the pooled `mean` and `class_means` as task params")
            vector, count, class_counts = second_pass(chunks, layout, task.params["mean"], task.params["class_means"])
        else:
            raise ConfigError(f"task config 'pass' must be 1 or 2; got {number!r}")
        check_counts(spec, count, class_counts, min_rows=policy.threshold(spec), what="moments for a secure sum")
        return Reply(node_id=app.node_id, kind=task.kind, round=task.round, params=ParamSet({"vector": vector}))

    return {SCHEMA: schema, SUMMARIZE: summarise, LOGISTIC_STEP: logistic_step, SECURE_MOMENTS: secure_moments}
