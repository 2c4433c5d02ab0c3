"""Lua scripts: one ``.lua`` file per broker verb, loaded once and run by SHA.

Each file opens with a header of ``-- KEYS[n] = ...``, ``-- ARGV[n] = ...``,
``-- DERIVED = ...`` and ``-- RETURNS = ...`` lines. The header is data: a unit
test reads it to prove that every key a script touches carries the queue's tag.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from redis import exceptions as rx

__all__ = ["LuaScript", "ScriptHeader", "evalsha_loading", "load_script", "script_names"]

_HEADER_LINE = re.compile(r"^--\s*(KEYS\[\d+\]|ARGV\[\d+\]|DERIVED|RETURNS)\s*=\s*(.*)$")


@dataclass(frozen=True)
class ScriptHeader:
    """What a script's header declares: its keys, arguments, derived keys and result."""

    keys: dict[int, str]
    argv: dict[int, str]
    derived: tuple[str, ...]
    returns: str


@dataclass(frozen=True)
class LuaScript:
    """A Lua script with its SHA1, as sent with EVALSHA."""

    name: str
    source: str
    sha: str
    header: ScriptHeader


def _parse_header(source: str) -> ScriptHeader:
    keys: dict[int, str] = {}
    argv: dict[int, str] = {}
    derived: list[str] = []
    returns = ""
    for line in source.splitlines():
        if not line.startswith("--"):
            break
        match = _HEADER_LINE.match(line)
        if match is None:
            continue
        label, text = match.group(1), match.group(2).strip()
        if label.startswith("KEYS"):
            keys[int(label[5:-1])] = text
        elif label.startswith("ARGV"):
            argv[int(label[5:-1])] = text
        elif label == "DERIVED":
            if text != "none":
                derived.extend(part.strip() for part in text.split(";") if part.strip())
        else:
            returns = text
    return ScriptHeader(keys=keys, argv=argv, derived=tuple(derived), returns=returns)


def script_names() -> list[str]:
    """Names of every script shipped with asyncq (file names without ``.lua``)."""
    folder = resources.files("asyncq._broker") / "lua"
    return sorted(p.name[:-4] for p in folder.iterdir() if p.name.endswith(".lua"))


# A line "-- INCLUDE = <name>" is replaced by lua/lib/<name>.lua: a local function that
# several scripts share (Redis runs each script alone, so they cannot import it).
_INCLUDE = re.compile(r"^--\s*INCLUDE\s*=\s*(\w+)\s*$", re.MULTILINE)


def _library(match: re.Match[str]) -> str:
    path = resources.files("asyncq._broker") / "lua" / "lib" / f"{match.group(1)}.lua"
    return path.read_text("utf-8").rstrip("\n")


@cache
def load_script(name: str) -> LuaScript:
    """Read ``lua/<name>.lua`` once, with its includes, and compute its SHA1."""
    written = (resources.files("asyncq._broker") / "lua" / f"{name}.lua").read_text("utf-8")
    source = _INCLUDE.sub(_library, written)
    sha = hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest()
    return LuaScript(name=name, source=source, sha=sha, header=_parse_header(written))


async def evalsha_loading(
    client: Any, script: LuaScript, keys: Sequence[str], args: Sequence[str | bytes | int | float]
) -> Any:
    """Run a script through a redis-py client, loading it where the node does not know
    it yet (a promoted replica or a restarted server has an empty script cache)."""
    try:
        return await client.evalsha(script.sha, len(keys), *keys, *args)
    except rx.NoScriptError:
        await client.script_load(script.source)
        return await client.evalsha(script.sha, len(keys), *keys, *args)
