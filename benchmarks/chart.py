"""The PNG chart: grouped bars of processing and enqueue throughput per library and topology."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # after use("Agg"): the backend is chosen first

from benchmarks.machine import one_line
from benchmarks.report import METRICS, Metric

_PANELS: list[tuple[str, list[str]]] = [
    ("Processing, one worker (tasks/s)", ["no-op /s", "sleep 10 ms /s"]),
    ("Enqueue (tasks/s)", ["enqueue 1-by-1 /s", "enqueue 32 callers /s", "enqueue batch /s"]),
]


def _metric(label: str) -> Metric:
    return next(m for m in METRICS if m.label == label)


def draw(doc: dict[str, Any], path: Path) -> Path:
    """Draw the chart of ``doc`` into ``path``."""
    runs = [run for run in doc["runs"] if run.get("status") != "skipped"]
    groups = [f"{run['library']}\n{run['topology']}" for run in runs]
    fig, axes = plt.subplots(len(_PANELS), 1, figsize=(max(8, 1.1 * len(runs) + 2), 8.5))
    for ax, (title, labels) in zip(axes, _PANELS, strict=True):
        width = 0.8 / len(labels)
        for index, label in enumerate(labels):
            metric = _metric(label)
            values = [metric.value(run) or 0.0 for run in runs]
            xs = [i + (index - (len(labels) - 1) / 2) * width for i in range(len(runs))]
            bars = ax.bar(xs, values, width, label=label.removesuffix(" /s"))
            for bar, run in zip(bars, runs, strict=True):
                cell = metric.cell(run)
                if cell in ("n/a", "failed", "-"):
                    ax.annotate(
                        cell,
                        (bar.get_x() + bar.get_width() / 2, 0),
                        ha="center",
                        va="bottom",
                        fontsize=7,
                        rotation=90,
                    )
                else:
                    ax.annotate(
                        cell,
                        (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                        ha="center",
                        va="bottom",
                        fontsize=7,
                    )
        ax.set_title(title)
        ax.set_xticks(range(len(runs)), groups, fontsize=8)
        ax.legend(fontsize=8)
        ax.grid(axis="y", alpha=0.3)
        ax.margins(y=0.15)
    fig.suptitle(
        f"asyncq and peers, {doc['generated'][:10]}\n{one_line(doc['machine'])}", fontsize=9
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
