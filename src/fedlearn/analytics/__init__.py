"""Exact federated analytics: the model all the data would give, without pooling the data.

Each node summarises its rows in one pass into mergeable sufficient statistics (count, means,
centred co-moments and their triangular factor R, extrema, per-class moments, fixed-bin
histograms); the coordinator merges the summaries and solves models from the merge. Merging is
exact, so the models equal scikit-learn's fitted on the pooled data, to floating-point
precision; least squares and PCA are solved from R, so ill-conditioned data keep their digits.
Nodes can add or remove rows later without a rescan of their moments, and models refit in
milliseconds.

* Summaries: :class:`Moments`, :class:`RFactor`, :class:`ClassMoments`, :class:`Histogram`,
  :class:`Summary` (a :class:`SummarySpec` says what to summarise); :func:`summarize` runs on a node.
* Estimators (scikit-learn compatible; ``fit_summary`` or ``fit``):
  :class:`FederatedLinearRegression`, :class:`FederatedRidge`, :class:`FederatedPCA`,
  :class:`FederatedGaussianNB`, :class:`FederatedLinearDiscriminantAnalysis`,
  :class:`FederatedQuadraticDiscriminantAnalysis`, :class:`FederatedCovariance` and
  :class:`FederatedLogisticRegression` (federated Newton rounds on features standardized by a
  :class:`FeatureScaling`); :func:`describe`.
* Data: any :class:`Table`: :class:`ArrayTable`, :class:`CsvTable`, :class:`FrameTable` (pandas, polars),
  :class:`ParquetTable`, :class:`SqlTable`; a DataFrame is accepted wherever data is.
* Workflow: :class:`AnalyticsJob` over any ``Fleet`` or simulated, and
  :class:`SecureAnalyticsJob`, whose statistics are summed under secure aggregation, and
  :class:`PrivateAnalyticsJob`, whose nodes release differentially private statistics
  (:class:`DPRequest`, :class:`NoisyStatistics`); node side
  :func:`analytics_handlers` under the node's :class:`DisclosurePolicy`; file-backed
  :class:`JobDir` behind ``fedlearn analytics``.
"""

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the real names and types, for mypy and IDEs; at run time they load lazily
    from fedlearn.analytics.bayes import FederatedGaussianNB
    from fedlearn.analytics.classes import ClassMoments
    from fedlearn.analytics.covariance import Description, FederatedCovariance, correlation, describe
    from fedlearn.analytics.discriminant import (
        FederatedLinearDiscriminantAnalysis,
        FederatedQuadraticDiscriminantAnalysis,
    )
    from fedlearn.analytics.handlers import LOGISTIC_STEP, SCHEMA, SUMMARIZE, analytics_handlers
    from fedlearn.analytics.histogram import Histogram, HistogramSpec
    from fedlearn.analytics.job import AnalyticsJob, JobReport, MemberReport
    from fedlearn.analytics.jobdir import JobDir
    from fedlearn.analytics.linear import FederatedLinearRegression, FederatedRidge
    from fedlearn.analytics.logistic import (
        FeatureScaling,
        FederatedLogisticRegression,
        NewtonStats,
        logistic_stats,
    )
    from fedlearn.analytics.moments import Moments, merge_all
    from fedlearn.analytics.noisy import NoisyStatistics, PrivacyBudget
    from fedlearn.analytics.pca import FederatedPCA
    from fedlearn.analytics.policy import DisclosurePolicy, check_shareable
    from fedlearn.analytics.private_job import DPRequest, PrivateAnalyticsJob, Release
    from fedlearn.analytics.rfactor import RFactor
    from fedlearn.analytics.scan import accumulate, rescan, summarize
    from fedlearn.analytics.secure_job import SecureAnalyticsJob
    from fedlearn.analytics.sources import (
        ArrayTable,
        ConcatTable,
        CsvTable,
        ReaderTable,
        Table,
        table_from_dataset,
    )
    from fedlearn.analytics.sql_table import SqlTable
    from fedlearn.analytics.summary import Summary, SummarySpec
    from fedlearn.analytics.tables import FrameTable, ParquetTable

# Names resolve on first use (PEP 562), so ``import fedlearn.analytics`` (and the CLI that mounts
# its commands) does not pay for scikit-learn until an estimator is actually needed. The imports
# above must name the same places; tests/analytics/test_public_api.py checks that they do.
_LOCATIONS = {
    "AnalyticsJob": "fedlearn.analytics.job",
    "SecureAnalyticsJob": "fedlearn.analytics.secure_job",
    "PrivateAnalyticsJob": "fedlearn.analytics.private_job",
    "DPRequest": "fedlearn.analytics.private_job",
    "Release": "fedlearn.analytics.private_job",
    "NoisyStatistics": "fedlearn.analytics.noisy",
    "PrivacyBudget": "fedlearn.analytics.noisy",
    "ArrayTable": "fedlearn.analytics.sources",
    "ClassMoments": "fedlearn.analytics.classes",
    "ConcatTable": "fedlearn.analytics.sources",
    "CsvTable": "fedlearn.analytics.sources",
    "Description": "fedlearn.analytics.covariance",
    "DisclosurePolicy": "fedlearn.analytics.policy",
    "FeatureScaling": "fedlearn.analytics.logistic",
    "FederatedCovariance": "fedlearn.analytics.covariance",
    "FederatedGaussianNB": "fedlearn.analytics.bayes",
    "FederatedLinearDiscriminantAnalysis": "fedlearn.analytics.discriminant",
    "FederatedLinearRegression": "fedlearn.analytics.linear",
    "FederatedLogisticRegression": "fedlearn.analytics.logistic",
    "FederatedPCA": "fedlearn.analytics.pca",
    "FederatedQuadraticDiscriminantAnalysis": "fedlearn.analytics.discriminant",
    "FederatedRidge": "fedlearn.analytics.linear",
    "FrameTable": "fedlearn.analytics.tables",
    "ParquetTable": "fedlearn.analytics.tables",
    "ReaderTable": "fedlearn.analytics.sources",
    "SqlTable": "fedlearn.analytics.sql_table",
    "Histogram": "fedlearn.analytics.histogram",
    "HistogramSpec": "fedlearn.analytics.histogram",
    "JobDir": "fedlearn.analytics.jobdir",
    "JobReport": "fedlearn.analytics.job",
    "LOGISTIC_STEP": "fedlearn.analytics.handlers",
    "MemberReport": "fedlearn.analytics.job",
    "Moments": "fedlearn.analytics.moments",
    "NewtonStats": "fedlearn.analytics.logistic",
    "RFactor": "fedlearn.analytics.rfactor",
    "SCHEMA": "fedlearn.analytics.handlers",
    "SUMMARIZE": "fedlearn.analytics.handlers",
    "Summary": "fedlearn.analytics.summary",
    "SummarySpec": "fedlearn.analytics.summary",
    "Table": "fedlearn.analytics.sources",
    "accumulate": "fedlearn.analytics.scan",
    "analytics_handlers": "fedlearn.analytics.handlers",
    "check_shareable": "fedlearn.analytics.policy",
    "correlation": "fedlearn.analytics.covariance",
    "describe": "fedlearn.analytics.covariance",
    "logistic_stats": "fedlearn.analytics.logistic",
    "merge_all": "fedlearn.analytics.moments",
    "rescan": "fedlearn.analytics.scan",
    "summarize": "fedlearn.analytics.scan",
    "table_from_dataset": "fedlearn.analytics.sources",
}


def __getattr__(name: str) -> Any:
    module = _LOCATIONS.get(name)
    if module is None:
        raise AttributeError(f"module 'fedlearn.analytics' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


__all__ = [
    "LOGISTIC_STEP",
    "SCHEMA",
    "SUMMARIZE",
    "AnalyticsJob",
    "ArrayTable",
    "ClassMoments",
    "ConcatTable",
    "CsvTable",
    "DPRequest",
    "Description",
    "DisclosurePolicy",
    "FeatureScaling",
    "FederatedCovariance",
    "FederatedGaussianNB",
    "FederatedLinearDiscriminantAnalysis",
    "FederatedLinearRegression",
    "FederatedLogisticRegression",
    "FederatedPCA",
    "FederatedQuadraticDiscriminantAnalysis",
    "FederatedRidge",
    "FrameTable",
    "Histogram",
    "HistogramSpec",
    "JobDir",
    "JobReport",
    "MemberReport",
    "Moments",
    "NewtonStats",
    "NoisyStatistics",
    "ParquetTable",
    "PrivacyBudget",
    "PrivateAnalyticsJob",
    "RFactor",
    "ReaderTable",
    "Release",
    "SecureAnalyticsJob",
    "SqlTable",
    "Summary",
    "SummarySpec",
    "Table",
    "accumulate",
    "analytics_handlers",
    "check_shareable",
    "correlation",
    "describe",
    "logistic_stats",
    "merge_all",
    "rescan",
    "summarize",
    "table_from_dataset",
]
