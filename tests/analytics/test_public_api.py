"""The public API of ``fedlearn.analytics`` is pinned: changing it is a deliberate act."""

from __future__ import annotations

import ast
from pathlib import Path

from fedlearn import analytics


def test_public_api_is_pinned() -> None:
    assert sorted(analytics.__all__) == sorted(
        [
            "LOGISTIC_STEP",
            "SCHEMA",
            "SUMMARIZE",
            "AnalyticsJob",
            "SecureAnalyticsJob",
            "PrivateAnalyticsJob",
            "DPRequest",
            "Release",
            "NoisyStatistics",
            "PrivacyBudget",
            "ArrayTable",
            "ClassMoments",
            "ConcatTable",
            "CsvTable",
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
            "ParquetTable",
            "ReaderTable",
            "SqlTable",
            "Histogram",
            "HistogramSpec",
            "JobDir",
            "JobReport",
            "MemberReport",
            "Moments",
            "NewtonStats",
            "RFactor",
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
    )
    assert all(hasattr(analytics, name) for name in analytics.__all__)


def test_every_public_name_resolves_lazily() -> None:
    from fedlearn import analytics

    assert all(getattr(analytics, name) is not None for name in analytics.__all__)


def test_typing_imports_and_lazy_locations_name_the_same_places() -> None:
    tree = ast.parse(Path(analytics.__file__).read_text())
    typing_block = next(
        node for node in tree.body if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING"
    )
    imported = {
        alias.name: node.module
        for node in typing_block.body
        if isinstance(node, ast.ImportFrom)
        for alias in node.names
    }

    assert imported == analytics._LOCATIONS
    assert set(analytics._LOCATIONS) == set(analytics.__all__)


def test_no_public_name_is_shadowed_by_a_submodule_of_the_same_name() -> None:
    """Importing ``fedlearn.analytics.x`` binds ``x`` on the package, hiding a lazy function ``x``."""
    package = Path(analytics.__file__).parent

    assert not [name for name in analytics.__all__ if (package / f"{name}.py").exists()]
