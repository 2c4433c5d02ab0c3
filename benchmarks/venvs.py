"""The virtual environments the benchmark runs in, created and kept up to date on demand.

``.venv-bench`` (at the repo root) holds asyncq's dependencies, every peer that can share
them, matplotlib and psutil; asyncq itself is imported from the working tree. A peer that
cannot share it (arq pins ``redis<6``) gets ``.venv-bench-<name>``. A stamp file records
what was installed, so an edited requirements file reinstalls on the next run.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tomllib
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent
SHARED = "shared"
_REQUIREMENTS = {SHARED: HERE / "requirements.txt", "arq": HERE / "requirements-arq.txt"}
_STAMP = ".bench-stamp"
_INSTALL_TIMEOUT_S = 1800


def venv_dir(name: str) -> Path:
    """``.venv-bench`` for the shared environment, ``.venv-bench-<name>`` for the others."""
    return ROOT / (".venv-bench" if name == SHARED else f".venv-bench-{name}")


def venv_python(name: str) -> Path:
    """The interpreter of environment ``name``."""
    return venv_dir(name) / "bin" / "python"


def asyncq_dependencies() -> list[str]:
    """asyncq's runtime dependencies, read from pyproject.toml (so they never drift)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return list(project.get("dependencies", []))


def requirements(name: str) -> list[str]:
    """What environment ``name`` must hold."""
    lines = _REQUIREMENTS[name].read_text().splitlines()
    pins = [line.split("#")[0].strip() for line in lines]
    wanted = [pin for pin in pins if pin]
    return [*asyncq_dependencies(), *wanted] if name == SHARED else wanted


def _stamp(name: str) -> str:
    text = "\n".join(requirements(name))
    return hashlib.sha256(text.encode()).hexdigest()


def is_current(name: str) -> bool:
    """Whether environment ``name`` exists and holds exactly the current requirements."""
    stamp = venv_dir(name) / _STAMP
    return venv_python(name).exists() and stamp.exists() and stamp.read_text() == _stamp(name)


def ensure(name: str, log: Callable[[str], None] = print) -> Path:
    """Create or update environment ``name`` if needed; return its interpreter."""
    if is_current(name):
        return venv_python(name)
    folder = venv_dir(name)
    log(f"setting up {folder.name} (pip install; the first time takes a minute)")
    if not venv_python(name).exists():
        subprocess.run([sys.executable, "-m", "venv", str(folder)], check=True, timeout=300)
    install_log = folder / "bench-install.log"
    with install_log.open("w") as output:
        done = subprocess.run(
            [
                str(venv_python(name)),
                "-m",
                "pip",
                "install",
                "--disable-pip-version-check",
                *requirements(name),
            ],
            stdout=output,
            stderr=subprocess.STDOUT,
            timeout=_INSTALL_TIMEOUT_S,
            check=False,
        )
    if done.returncode != 0:
        tail = install_log.read_text().strip().splitlines()[-5:]
        raise RuntimeError(f"pip install into {folder.name} failed: " + " | ".join(tail))
    (folder / _STAMP).write_text(_stamp(name))
    return venv_python(name)


def running_in(name: str) -> bool:
    """Whether this interpreter is environment ``name``'s."""
    return Path(sys.prefix).resolve() == venv_dir(name).resolve()


def reexec_in_shared(module: str) -> None:
    """Replace this process by ``python -m module`` with the same arguments, under
    ``.venv-bench``'s interpreter (created first if need be), from the repository root."""
    python = ensure(SHARED)
    os.environ["PYTHONPATH"] = str(ROOT)
    os.chdir(ROOT)
    os.execv(python, [str(python), "-m", module, *sys.argv[1:]])
