"""Every Lua script touches keys of one queue only: the same-slot rule, proved statically.

Each script declares its KEYS and any key it builds from ARGV in its header. This
test checks that every declared key carries the `{q}` tag, that the body touches
no key other than KEYS[n] or a declared derived key, and that the header lists
every KEYS and ARGV index the body uses.
"""

from __future__ import annotations

import re

import pytest

from asyncq._broker.scripts import load_script, script_names

QUEUE_KEY = re.compile(r"^asynq:\{q\}:\S+")
CALL = re.compile(r"redis\.call\(\s*\"(\w+)\"\s*,\s*([^,)]+)")
# Commands whose first argument is not a key.
KEYLESS = {"PUBLISH", "TIME"}


def test_there_are_scripts() -> None:
    assert {"enqueue", "schedule", "add_to_group"} <= set(script_names())


@pytest.mark.parametrize("name", script_names())
def test_declared_keys_carry_the_queue_tag(name: str) -> None:
    header = load_script(name).header
    assert header.keys, f"{name}.lua declares no KEYS"
    assert header.returns, f"{name}.lua does not say what it returns"
    for index, text in header.keys.items():
        assert QUEUE_KEY.match(text), f"{name}.lua KEYS[{index}] = {text!r} is not a queue key"
    for text in header.derived:
        # "ARGV[2] .. id -> asynq:{q}:t:<id>": the built key must carry the tag too.
        built = text.split("->")[-1].strip()
        assert QUEUE_KEY.match(built), f"{name}.lua derives {built!r}, not a queue key"


@pytest.mark.parametrize("name", script_names())
def test_body_uses_only_declared_keys(name: str) -> None:
    script = load_script(name)
    header = script.header
    body = "\n".join(line for line in script.source.splitlines() if not line.startswith("--"))
    derived_sources = {text.split("..")[0].strip() for text in header.derived}
    for command, first_arg in CALL.findall(body):
        if command.upper() in KEYLESS:
            continue
        arg = first_arg.strip()
        key_ref = re.fullmatch(r"KEYS\[(\d+)\]", arg)
        if key_ref:
            assert int(key_ref.group(1)) in header.keys, f"{name}.lua uses undeclared {arg}"
            continue
        # Any other key expression must be built from a declared derived-key prefix.
        assert any(src in arg or arg in _locals_built_from(body, src) for src in derived_sources), (
            f"{name}.lua calls {command} on {arg!r}, which is neither KEYS[n] nor a declared "
            "derived key"
        )
    for index in map(int, re.findall(r"KEYS\[(\d+)\]", body)):
        assert index in header.keys, f"{name}.lua uses KEYS[{index}] without declaring it"
    for index in map(int, re.findall(r"ARGV\[(\d+)\]", body)):
        assert index in header.argv, f"{name}.lua uses ARGV[{index}] without declaring it"


def _locals_built_from(body: str, source: str) -> set[str]:
    """Names of Lua locals assigned from an expression that contains ``source``."""
    pattern = re.compile(r"local\s+(\w+)\s*=\s*([^\n]+)")
    return {m.group(1) for m in pattern.finditer(body) if source in m.group(2)}
