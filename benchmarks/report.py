"""Turn a result document into the Markdown table, the asyncq/peer ratios and the README section.

``python -m benchmarks.report [results/latest.json] [--write-readme] [--chart]`` redoes
the table (and the chart) from a saved result file without running anything.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.machine import one_line

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
README = HERE / "README.md"
START, END = "<!-- results -->", "<!-- /results -->"

Run = dict[str, Any]


def _path(*keys: str) -> Callable[[Run], Any]:
    def get(run: Run) -> Any:
        value: Any = run
        for key in keys:
            if not isinstance(value, dict):
                return None
            value = value.get(key)
        return value

    return get


@dataclass(frozen=True)
class Metric:
    """One column of the table: where its number is, how to show it, which way is better."""

    label: str
    scenario: str
    get: Callable[[Run], Any]
    digits: int
    higher_is_better: bool

    def value(self, run: Run) -> float | None:
        """The number, or ``None`` when it is missing."""
        value = self.get(run)
        return float(value) if isinstance(value, int | float) else None

    def cell(self, run: Run) -> str:
        """The table cell: the number, "n/a", "failed" or "-"."""
        if self.scenario == "batch" and _path("enqueue_batch", "unsupported")(run):
            return "n/a"
        value = self.value(run)
        if value is None:
            return "failed" if self.scenario in run.get("errors", {}) else "-"
        text = f"{value:,.{self.digits}f}"
        if self.scenario == "batch" and _path("enqueue_batch", "note")(run):
            text += "*"
        return text


METRICS = [
    Metric("enqueue 1-by-1 /s", "noop", _path("enqueue_single", "tasks_per_s"), 0, True),
    Metric("enqueue 32 callers /s", "callers", _path("enqueue_callers", "tasks_per_s"), 0, True),
    Metric("enqueue batch /s", "batch", _path("enqueue_batch", "tasks_per_s"), 0, True),
    Metric("no-op /s", "noop", _path("process_noop", "tasks_per_s"), 0, True),
    Metric("sleep 10 ms /s", "sleep", _path("process_sleep", "tasks_per_s"), 0, True),
    Metric("CPU s /1k tasks", "noop", _path("process_noop", "cpu_s_per_1000"), 3, False),
    Metric("peak RSS MB", "noop", _path("process_noop", "max_rss_mb"), 0, False),
    Metric("pickup p50 ms", "latency", _path("latency", "p50"), 1, False),
    Metric("pickup p99 ms", "latency", _path("latency", "p99"), 1, False),
    Metric("Redis cmds /task", "noop", _path("commands", "total_per_task"), 1, False),
    Metric("of which processing", "noop", _path("commands", "processing_per_task"), 1, False),
    Metric("Redis CPU s /1k tasks", "noop", _path("commands", "redis_cpu_s_per_1000"), 3, False),
]


def _measured(doc: dict[str, Any]) -> list[Run]:
    return [run for run in doc["runs"] if run.get("status") != "skipped"]


def table(doc: dict[str, Any]) -> str:
    """The results as one Markdown table, one row per library and topology."""
    head = ["library", "topology", *(m.label for m in METRICS)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * 2 + "---:|" * len(METRICS)]
    for run in _measured(doc):
        cells = [run["library"], run["topology"], *(m.cell(run) for m in METRICS)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def notes(doc: dict[str, Any]) -> str:
    """Skipped pairs, failures and footnotes under the table."""
    out = []
    for run in doc["runs"]:
        if run.get("status") == "skipped":
            out.append(f"- {run['library']} on {run['topology']}: not run, {run['reason']}.")
        for scenario, error in run.get("errors", {}).items():
            short = error if len(error) < 160 else error[:157] + "..."
            out.append(f"- {run['library']} on {run['topology']}, {scenario}: failed: {short}")
        note = _path("enqueue_batch", "note")(run)
        if note:
            out.append(f"- \\* {run['library']} on {run['topology']}: {note}.")
    return "\n".join(out)


def ceiling_note(doc: dict[str, Any]) -> str:
    """The one-by-one methods' own limits on this machine, and asyncq's columns against them."""
    limits = doc.get("method_ceiling") or {}
    in_flight = doc["parameters"]["in_flight"]
    methods = [
        ("single", f"The one-by-one method alone (`gather` + semaphore, {in_flight} in flight"),
        ("callers", f"The {in_flight} callers method alone ({in_flight} loops of calls"),
    ]
    out = []
    for key, opening in methods:
        ceiling = limits.get(f"{key}_per_s")
        if not ceiling:
            continue
        out.append(
            f"{opening}, each call only waiting one turn of the event loop, no library) runs"
            f" at {ceiling:,.0f} calls/s on this machine (best of three runs, in asyncq's"
            f" environment): about the most any library can show in that column here."
        )
        column = _path(f"enqueue_{key}", "tasks_per_s")
        for topology in ("standalone", "cluster"):
            here = [r for r in _measured(doc) if r["topology"] == topology and column(r)]
            mine = next((column(r) for r in here if r["library"] == "asyncq"), None)
            best = max((column(r) for r in here if r["library"] != "asyncq"), default=None)
            if mine and best:
                out.append(
                    f"{topology.capitalize()}: asyncq reaches {mine / ceiling:.0%} of it; five"
                    f" times the best peer would be {5 * best:,.0f} calls/s"
                    f" ({5 * best / ceiling:.0%} of it)."
                )
    return " ".join(out)


def floor_note(doc: dict[str, Any]) -> str:
    """The pickup latency with no library on this machine, and asyncq's against it."""
    floor = doc.get("pickup_floor") or {}
    if not floor:
        return ""
    rate = doc["parameters"]["latency_rate"]
    out = [
        f"The pickup floor (no library: `LPUSH` into a list and one redis-py `BLPOP` loop,"
        f" {rate:g} tasks/s into it, the same handler) on this machine:"
    ]
    for topology in ("standalone", "cluster"):
        lat = floor.get(topology)
        if not lat or "p50" not in lat:
            if lat and "error" in lat:
                out.append(f"{topology} not measured ({lat['error']:.80});")
            continue
        line = f"{topology} p50 {lat['p50']:.1f} ms, p99 {lat['p99']:.1f} ms"
        mine = next(
            (r.get("latency") for r in _measured(doc)
             if r["library"] == "asyncq" and r["topology"] == topology),
            None,
        )  # fmt: skip
        if mine and "p50" in mine:
            line += (
                f" (asyncq {mine['p50'] - lat['p50']:+.1f} / {mine['p99'] - lat['p99']:+.1f} ms)"
            )
        out.append(line + ";")
    out[-1] = out[-1].rstrip(";") + "."
    out.append(
        "A reference, not a bound: one plain consumer, measured after the libraries;"
        " a library within a few tenths of a millisecond of it is at the machine's limit."
    )
    return " ".join(out)


def ratios(doc: dict[str, Any]) -> str:
    """asyncq's value against the best peer's, per metric and topology."""
    runs = _measured(doc)
    topologies = sorted({run["topology"] for run in runs}, key=["standalone", "cluster"].index)
    lines = [
        "| metric | topology | asyncq | best peer | asyncq / best peer |",
        "|---|---|---:|---|---:|",
    ]
    for metric in METRICS:
        for topology in topologies:
            here = [run for run in runs if run["topology"] == topology]
            mine = next((metric.value(r) for r in here if r["library"] == "asyncq"), None)
            peers = [
                (value, r["library"])
                for r in here
                if r["library"] != "asyncq" and (value := metric.value(r)) is not None
            ]
            if mine is None or not peers:
                continue
            best_value, best_lib = (max if metric.higher_is_better else min)(peers)
            ratio = mine / best_value if best_value else float("inf")
            better = ratio >= 1 if metric.higher_is_better else ratio <= 1
            lines.append(
                f"| {metric.label} | {topology} | {mine:,.{metric.digits}f} | "
                f"{best_lib} {best_value:,.{metric.digits}f} | "
                f"{ratio:.2f}{'' if better else ' ▼'} |"
            )
    return "\n".join(lines)


def loop_words(parameters: dict[str, Any]) -> str:
    """Which event loop every process ran on (result files older than ``--loop``: asyncio)."""
    if parameters.get("loop", "asyncio") == "uvloop":
        return "every process on uvloop"
    return "plain asyncio event loops (no uvloop)"


def summary(doc: dict[str, Any]) -> str:
    """Heading, table, notes and ratios: what the run prints at the end and the README holds."""
    p = doc["parameters"]
    parts = [
        f"Measured {doc['generated'][:10]} on {one_line(doc['machine'])}.",
        "",
        f"N = {p['tasks']:,} tasks (sleep: {p['sleep_tasks']:,}), concurrency {p['concurrency']},"
        f" {p['in_flight']} enqueues in flight, pickup latency over {p['latency_tasks']:,} tasks"
        f" at {p['latency_rate']:g}/s; one worker process; {loop_words(p)}. Versions: "
        + "; ".join(
            ", ".join(f"{dist} {version}" for dist, version in dists.items())
            for dists in doc["machine"]["libraries"].values()
        )
        + ".",
        "",
        table(doc),
    ]
    extra = notes(doc)
    if extra:
        parts += ["", extra]
    compared = ratios(doc)
    if compared.count("\n") >= 2:  # more than the header: asyncq and a peer both ran
        parts += [
            "",
            "asyncq against the best peer on each metric (▼: asyncq is worse; higher is better"
            " for tasks/s, lower for CPU, memory, latency and commands):",
            "",
            compared,
        ]
    for note in (ceiling_note(doc), floor_note(doc)):
        if note:
            parts += ["", note]
    return "\n".join(parts)


def write_json(doc: dict[str, Any], name: str) -> Path:
    """Save the result document as ``results/<name>.json``."""
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(doc, indent=2, sort_keys=False) + "\n")
    return path


def write_readme(doc: dict[str, Any], chart_name: str = "latest") -> None:
    """Put the summary (and the chart) between the README's results markers."""
    text = README.read_text()
    if START not in text or END not in text:
        raise RuntimeError(f"{README.name} lacks the {START} ... {END} markers")
    body = f"{summary(doc)}\n\n![results chart](results/{chart_name}.png)"
    pattern = re.compile(re.escape(START) + ".*?" + re.escape(END), re.DOTALL)
    README.write_text(pattern.sub(lambda _: f"{START}\n{body}\n{END}", text, count=1))


def main(argv: list[str] | None = None) -> int:
    """Re-print (and optionally re-publish) a saved result file."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.report")
    parser.add_argument("result", nargs="?", default=str(RESULTS / "latest.json"))
    parser.add_argument("--write-readme", action="store_true", help="update benchmarks/README.md")
    parser.add_argument("--chart", action="store_true", help="redraw the PNG beside the JSON")
    args = parser.parse_args(argv)
    path = Path(args.result)
    doc = json.loads(path.read_text())
    print(summary(doc))
    if args.chart:
        from benchmarks.chart import draw

        draw(doc, path.with_suffix(".png"))
    if args.write_readme:
        write_readme(doc, path.stem)
    return 0


if __name__ == "__main__":
    sys.exit(main())
