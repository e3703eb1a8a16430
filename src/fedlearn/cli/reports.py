"""Write a finished run's artifacts: history as JSON and CSV, the model, and a metrics plot."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from fedlearn.core.codec import encode
from fedlearn.core.params import ParamSet
from fedlearn.engine.history import RoundRecord, history_to_csv, history_to_json


def write_run_outputs(
    out_dir: str | Path, params: ParamSet, history: Sequence[RoundRecord], metadata: Mapping[str, str]
) -> list[Path]:
    """Write ``history.json``, ``history.csv``, ``model.safetensors`` and ``metrics.png``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = {
        "history.json": history_to_json(history).encode(),
        "history.csv": history_to_csv(history).encode(),
        "model.safetensors": encode(params, metadata=metadata),
    }
    written = []
    for name, content in files.items():
        path = out / name
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_bytes(content)
        tmp.replace(path)  # never leave a half-written artifact behind
        written.append(path)
    written.append(plot_metrics(history, out / "metrics.png"))
    return written


def plot_metrics(history: Sequence[RoundRecord], path: Path) -> Path:
    """Loss and accuracy per round, from central evaluation where there is one."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rounds = [r.round for r in history]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    for label, attr in (("central", "central_metrics"), ("federated", "federated_metrics"), ("fit", "fit_metrics")):
        for metric, axis in (("loss", ax_loss), ("accuracy", ax_acc)):
            points = [(r.round, getattr(r, attr)[metric]) for r in history if metric in getattr(r, attr)]
            if points:
                xs, ys = zip(*points, strict=True)
                axis.plot(xs, ys, marker="o", markersize=3, label=label)
    for axis, title in ((ax_loss, "loss"), (ax_acc, "accuracy")):
        axis.set_title(title)
        axis.set_xlabel("round")
        if rounds:
            axis.set_xlim(min(rounds) - 0.5, max(rounds) + 0.5)
        if axis.has_data():
            axis.legend()
        axis.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
