"""What the numbers were measured on: CPU, cores, memory, Python, library versions."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

from benchmarks import venvs
from benchmarks.libs import LIBRARIES


def cpu_model() -> str:
    """The CPU model name from /proc/cpuinfo (or what platform knows)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version_in(python: Path, distribution: str) -> str:
    """A distribution's version as another interpreter sees it."""
    code = f"import importlib.metadata as m; print(m.version({distribution!r}))"
    done = subprocess.run(
        [str(python), "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    return done.stdout.strip() or "?"


def _git_revision() -> str:
    """The checked-out commit, with "+dirty" when asyncq/ has uncommitted changes (read-only)."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=venvs.ROOT,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        clean = (
            subprocess.run(
                ["git", "diff", "--quiet", "HEAD", "--", "asyncq"],
                cwd=venvs.ROOT,
                capture_output=True,
                timeout=10,
                check=False,
            ).returncode
            == 0
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head if clean else head + "+dirty"


def library_versions(libs: list[str]) -> dict[str, dict[str, str]]:
    """For each library: the versions of its distributions, in the interpreter it runs in."""
    import asyncq  # the working tree's asyncq, which the children import too

    versions: dict[str, dict[str, str]] = {}
    for lib in libs:
        info = LIBRARIES[lib]
        found: dict[str, str] = {}
        for dist in info.distributions:
            if dist == "asyncq":
                found[dist] = f"{asyncq.__version__} ({_git_revision()})"
            elif info.venv == venvs.SHARED:
                found[dist] = importlib.metadata.version(dist)
            else:
                found[dist] = _version_in(venvs.venv_python(info.venv), dist)
        versions[lib] = found
    return versions


def describe(redis_versions: dict[str, str], libs: list[str]) -> dict[str, Any]:
    """The machine section of the result file."""
    import psutil  # lives in .venv-bench; the report alone runs without it

    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "ram_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "redis": redis_versions,
        "libraries": library_versions(libs),
    }


def one_line(machine: dict[str, Any]) -> str:
    """The machine in one line, for the README and the table heading."""
    redis = sorted(set(machine.get("redis", {}).values()))
    return (
        f"{machine['cpu']}, {machine['cores']} cores, {machine['ram_gb']} GB RAM, "
        f"Python {machine['python']}, Redis {', '.join(redis) or '?'}"
    )
