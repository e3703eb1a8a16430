"""What the model package costs over the bare codec, and what a loaded model costs over plain NumPy.

The model is a ``numpy.mlp`` of 784 features, hidden layers (1024, 1024) and 10 classes: 1.86 M
float32 parameters, 7.4 MB, the size of a digits-style network. For each step the baseline does
the same work with nothing of the registry around it:

* encode: ``ModelPackage.to_bytes`` (params plus the JSON description) against ``codec.encode``;
* decode: ``ModelPackage.from_bytes`` (parse, check every field, check the arrays against the
  learner's shapes) against ``codec.decode``;
* file: ``write`` then ``read`` a package against writing and reading the same bytes raw;
* load: ``load_package`` (build the scikit-learn MLPClassifier holding the arrays);
* predict: ``RegisteredModel.predict`` on 2,000 encoded rows against the learner's own NumPy
  forward pass over the same rows.

Each step is the median of ``--repeats`` runs, in one process (nothing here forks). Run from the
repository root:

    .venv/bin/python benchmarks/registry_package.py --repeats 7
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROWS = 2_000


def _median_ms(step: Callable[[], Any], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        step()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()

    import numpy as np

    from fedlearn.client.learners import builtin_learner
    from fedlearn.client.numpy_trainer import _mlp_forward
    from fedlearn.core.codec import decode, encode
    from fedlearn.data.dataset import Dataset
    from fedlearn.data.schema import InputSchema
    from fedlearn.registry.package import ModelPackage
    from fedlearn.registry.predictors import load_package

    features, classes, hidden = 784, 10, [1024, 1024]
    shape = Dataset(x=np.zeros((1, features), np.float32), y=np.zeros(1, np.int64), n_classes=classes)
    params = builtin_learner("numpy.mlp", shape, hidden=hidden).init_params(0)
    package = ModelPackage(
        name="digits", version=1, kind="learner", model="numpy.mlp", options={"hidden": hidden},
        task="classification", classes=tuple(range(classes)),
        schema=InputSchema.numeric([f"p{i}" for i in range(features)]), params=params,
    )  # fmt: skip
    data = package.to_bytes()
    raw = encode(params)
    model = load_package(package)
    x = np.random.default_rng(0).standard_normal((ROWS, features)).astype(np.float32)
    assert np.array_equal(model.predict(x), _mlp_forward(params, x)[1].argmax(axis=1))

    with tempfile.TemporaryDirectory() as tmp:
        path, raw_path = Path(tmp) / "digits.safetensors", Path(tmp) / "raw.bin"

        def file_step() -> None:
            ModelPackage.read(package.write(path))

        def raw_file_step() -> None:
            raw_path.write_bytes(data)
            raw_path.read_bytes()

        rows = [
            ("encode", _median_ms(package.to_bytes, args.repeats), _median_ms(lambda: encode(params), args.repeats)),
            ("decode", _median_ms(lambda: ModelPackage.from_bytes(data), args.repeats),
             _median_ms(lambda: decode(raw), args.repeats)),
            ("file write + read", _median_ms(file_step, args.repeats), _median_ms(raw_file_step, args.repeats)),
            ("load", _median_ms(lambda: load_package(package), args.repeats), None),
            ("predict 2k rows", _median_ms(lambda: model.predict(x), args.repeats),
             _median_ms(lambda: _mlp_forward(params, x)[1].argmax(axis=1), args.repeats)),
        ]  # fmt: skip
    print(f"package {len(data) / 1e6:.2f} MB ({len(data) - len(raw)} bytes more than the bare codec's)")
    print("| step | registry (median) | baseline (median) | ratio |")
    print("|---|---|---|---|")
    for step, ours, baseline in rows:
        base = "-" if baseline is None else f"{baseline:.2f} ms"
        ratio = "-" if baseline is None else f"{ours / baseline:.2f}x"
        print(f"| {step} | {ours:.2f} ms | {base} | {ratio} |")


if __name__ == "__main__":
    main()
