"""Every Lua script touches keys of one slot only: the same-slot rule, proved statically.

Each script declares its KEYS and any key it builds from ARGV in its header. This
test checks that every declared key carries the same hash tag (`{q}` for queue
scripts; a script of a single key needs none), that the body touches no key other
than KEYS[n] or a declared derived key (itself, or through a local function's first
parameter), and that the header lists every KEYS and ARGV index the body uses.
"""

from __future__ import annotations

import re

import pytest

from asyncq._broker.scripts import load_script, script_names

TAGGED_KEY = re.compile(r"^asynq:[a-z_:]*(\{[^}]+\})\S*")
CALL = re.compile(r"redis\.p?call\(\s*\"(\w+)\"\s*,\s*([^,)]+)")
# Commands whose first argument is not a key.
KEYLESS = {"PUBLISH", "TIME"}
LOCAL_FUNCTION = re.compile(r"local\s+function\s+(\w+)\(\s*(\w+)")


def test_there_are_scripts() -> None:
    assert {"enqueue", "schedule", "add_to_group"} <= set(script_names())


@pytest.mark.parametrize("name", script_names())
def test_includes_are_replaced_by_the_shared_function(name: str) -> None:
    """A script runs alone in Redis: what it includes must be in the source it sends."""
    source = load_script(name).source
    assert "-- INCLUDE =" not in source
    if name in ("done", "done_many", "mark_as_complete", "retry", "archive"):
        assert source.count("local function count(key, n)") == 1


@pytest.mark.parametrize("name", script_names())
def test_declared_keys_share_one_hash_tag(name: str) -> None:
    header = load_script(name).header
    assert header.keys, f"{name}.lua declares no KEYS"
    assert header.returns, f"{name}.lua does not say what it returns"
    # "ARGV[2] .. id -> asynq:{q}:t:<id>": a built key must carry the tag too.
    declared = [text.split()[0] for text in header.keys.values()]
    declared += [text.split("->")[-1].strip() for text in header.derived]
    if len(declared) == 1:
        return  # one key is one slot, tagged or not (asynq's scheduler history keys are not)
    tags = set()
    for key in declared:
        match = TAGGED_KEY.match(key)
        assert match, f"{name}.lua touches {key!r}, which has no hash tag"
        tags.add(match.group(1))
    assert len(tags) == 1, f"{name}.lua touches keys of several tags: {sorted(tags)}"


@pytest.mark.parametrize("name", script_names())
def test_body_uses_only_declared_keys(name: str) -> None:
    script = load_script(name)
    header = script.header
    body = "\n".join(line for line in script.source.splitlines() if not line.startswith("--"))
    # "ARGV[2] .. id -> asynq:{q}:t:<id>" and "ARGV[3] -> asynq:{q}:wakeup": the ARGV part.
    derived_sources = {text.split("->")[0].split("..")[0].strip() for text in header.derived}
    # A local function's first parameter, given keys by its callers ("count(KEYS[4], 1)").
    helpers = dict(LOCAL_FUNCTION.findall(body))

    def check(command: str, arg: str) -> None:
        if command.upper() in KEYLESS:
            return
        key_ref = re.fullmatch(r"KEYS\[(\d+)\]", arg)
        if key_ref:
            assert int(key_ref.group(1)) in header.keys, f"{name}.lua uses undeclared {arg}"
            return
        if re.fullmatch(r"KEYS\[[a-z]\w*\]", arg):
            return  # a loop over declared KEYS, which all share the tag
        callers = [f for f, parameter in helpers.items() if parameter == arg]
        if callers:
            uses = re.findall(rf"(?<!function ){callers[0]}\(\s*([^,)]+)", body)
            assert uses, f"{name}.lua never calls {callers[0]}"
            for use in uses:
                check(f"{command} (in {callers[0]})", use.strip())
            return
        # Any other key expression must be built from a declared derived-key prefix;
        # unpack(list, ...) passes keys that were appended to a list.
        arg = arg.removeprefix("unpack(")
        assert any(src in arg or arg in _locals_built_from(body, src) for src in derived_sources), (
            f"{name}.lua calls {command} on {arg!r}, which is neither KEYS[n] nor a declared "
            "derived key"
        )

    for command, first_arg in CALL.findall(body):
        check(command, first_arg.strip())
    for index in map(int, re.findall(r"KEYS\[(\d+)\]", body)):
        assert index in header.keys, f"{name}.lua uses KEYS[{index}] without declaring it"
    for index in map(int, re.findall(r"ARGV\[(\d+)\]", body)):
        assert index in header.argv, f"{name}.lua uses ARGV[{index}] without declaring it"


def _locals_built_from(body: str, source: str) -> set[str]:
    """Names of Lua locals, or lists' items, assigned from an expression with ``source``."""
    local = re.compile(r"local\s+(\w+)\s*=\s*([^\n]+)")
    item = re.compile(r"(\w+)\[[^\]\n]*\]\s*=\s*([^\n]+)")
    return {
        m.group(1)
        for pattern in (local, item)
        for m in pattern.finditer(body)
        if source in m.group(2)
    }


def _builds_keys_per_item(name: str) -> bool:
    """Whether the script builds keys from its arguments ("ARGV[2] .. id -> ...")."""
    return any(".." in text.split("->")[0] for text in load_script(name).header.derived)


@pytest.mark.parametrize("name", [n for n in script_names() if _builds_keys_per_item(n)])
def test_scripts_that_build_keys_per_item_declare_the_slot_guard_last(name: str) -> None:
    # During a slot move, a script that builds keys from its arguments would fail at the
    # first one already moved; a declared key that never exists makes Redis refuse the
    # call before it runs (TRYAGAIN), and the connector retries it. The dequeue's record
    # key, new for every call, plays that part for the dequeue.
    keys = load_script(name).header.keys
    last = keys[max(keys)].split()[0]
    assert last in ("asynq:{q}:slot-guard", "asynq:{q}:dequeue:<token>"), (
        f"{name}.lua's last key is {last}, not the slot guard"
    )
