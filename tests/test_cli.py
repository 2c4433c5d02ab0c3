"""The inspection commands (`asyncq queue|task|stats|server|cron|group`) against real Redis.

The key flows run the command as a process (`python -m asyncq ...`), the way an operator
does; the rest use click's CliRunner in-process, which is faster. Output is not a terminal
in both cases, so tables come in the plain layout: header, dashes, one line per row.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis
from click.testing import CliRunner, Result
from google.protobuf.timestamp_pb2 import Timestamp

import asyncq
from asyncq import Client, Connector, Task
from asyncq._proto.asynq_pb2 import SchedulerEnqueueEvent, SchedulerEntry, TaskMessage
from asyncq.cli.main import cli
from asyncq.testing import eventually
from asyncq.testing.plugin import ClusterTarget, StandaloneTarget
from asyncq.testing.servers import free_port
from examples.tutorial.client import enqueue_tutorial_tasks
from tests.worker_helpers import key, task_state

ENV_NAMES = ("ASYNCQ_REDIS_URL", "ASYNCQ_CLUSTER_NODES", "ASYNCQ_REDIS_TLS",
             "ASYNCQ_REDIS_TLS_CA_CERTS", "ASYNCQ_REDIS_USERNAME",
             "ASYNCQ_REDIS_PASSWORD")  # fmt: skip
TUTORIAL_SLOTS = {"images": 9450, "notifications": 16340, "webhooks": 4418}


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    """``python -m asyncq ARGS`` as a process, without connection settings from the caller."""
    env = {k: v for k, v in os.environ.items() if k not in ENV_NAMES}
    return subprocess.run(
        [sys.executable, "-m", "asyncq", *args], capture_output=True, text=True, env=env,
        timeout=60,
    )  # fmt: skip


def invoke(*args: str) -> Result:
    """``asyncq ARGS`` in-process with CliRunner."""
    return CliRunner().invoke(
        cli, list(args), prog_name="asyncq", env=dict.fromkeys(ENV_NAMES, None)
    )


async def ainvoke(*args: str) -> Result:
    """``invoke`` from an async test (the command runs its own event loop, in a thread)."""
    return await asyncio.to_thread(invoke, *args)


def ok(result: Result) -> str:
    assert result.exit_code == 0, (result.output, result.exception)
    return result.stdout


def rows(output: str, first: str) -> list[list[str]]:
    """The header and rows of the plain table whose header starts with ``first``; the
    columns are cut where the runs of dashes under the headers start."""
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(first))
    starts = [m.start() for m in re.finditer(r"-+", lines[start + 1])]
    bounds = list(zip(starts, [*starts[1:], None], strict=True))
    table = []
    for line in [lines[start], *lines[start + 2 :]]:
        if not line.strip():
            break
        table.append([line[a:b].strip() for a, b in bounds])
    return table


def one_error_line(result: Result, exit_code: int = 1) -> str:
    """The single ``Error: ...`` line of a failed command (no traceback)."""
    assert result.exit_code == exit_code, (result.output, result.exception)
    assert isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error")]
    assert len(errors) == 1, result.stderr
    if exit_code == 1:
        assert result.stderr.strip() == errors[0]
    return errors[0]


@pytest.fixture
def url(redis_server: StandaloneTarget) -> list[str]:
    return ["--redis-url", redis_server.url]


# -- queue ls --cluster on the tutorial's queues ------------------------------------------------


async def _clear_tutorial_queues(connector: Connector) -> None:
    for queue in TUTORIAL_SLOTS:
        async for name in connector.client.scan_iter(match=key(queue, "*")):
            await connector.client.delete(name)


async def test_queue_ls_cluster_shows_slot_and_nodes_of_the_tutorial_queues(
    cluster_connector: Connector, redis_cluster: ClusterTarget
) -> None:
    harness = redis_cluster.harness
    if harness is None:
        pytest.skip("needs the harness's own cluster to know its layout")
    seeds = ["--cluster-nodes", ",".join(redis_cluster.seeds)]
    await _clear_tutorial_queues(cluster_connector)
    try:
        await enqueue_tutorial_tasks(cluster_connector)
        # A name Go's asynq accepts and asyncq cannot place: named, and left out.
        await cluster_connector.client.sadd("asynq:queues", "legacy{x}")
        listed = run_cli("queue", "ls", "--cluster", *seeds)
        plain = run_cli("queue", "ls", *seeds)
        as_json = run_cli("queue", "ls", "--cluster", "--json", *seeds)
    finally:
        await _clear_tutorial_queues(cluster_connector)
        await cluster_connector.client.srem("asynq:queues", *TUTORIAL_SLOTS, "legacy{x}")
    assert listed.returncode == 0, listed.stderr
    assert "skipped queue 'legacy{x}'" in listed.stderr
    table = rows(listed.stdout, "Queue")
    assert table[0] == ["Queue", "Cluster KeySlot", "Cluster Nodes"]
    node_ids = {
        address: fields["node_id"]
        for address, fields in (await cluster_connector.call(lambda c: c.cluster_nodes())).items()
    }
    found = {row[0]: row[1:] for row in table[1:]}
    for queue, slot in TUTORIAL_SLOTS.items():
        master, replicas = harness.slot_owner(slot)
        nodes = re.fullmatch(r"\[(.*)\]", found[queue][1])
        assert found[queue][0] == str(slot) and nodes is not None
        pairs = re.findall(r"\{([0-9a-f]{40}) (\S+)\}", nodes.group(1))
        assert [address for _, address in pairs] == [master, *replicas]
        assert all(node_ids[address] == node_id for node_id, address in pairs)
    assert set(TUTORIAL_SLOTS) <= set(plain.stdout.split())
    data = {entry["queue"]: entry for entry in json.loads(as_json.stdout)}
    assert data["images"]["slot"] == 9450
    assert data["images"]["nodes"][0]["role"] == "master"


def test_queue_ls_cluster_on_one_redis_is_a_readable_error(url: list[str]) -> None:
    line = one_error_line(invoke("queue", "ls", "--cluster", *url))
    assert "--cluster needs a Redis Cluster" in line


# -- tasks -------------------------------------------------------------------------------------


async def test_task_ls_inspect_and_state_changes(url: list[str], queue_name: str) -> None:
    q = ["--queue", queue_name]
    for args in (
        ["--id", "p1", "--payload", '{"n": 1}'],
        ["--id", "p2"],
        ["--id", "s1", "--process-in", "1h"],
        ["--id", "a1", "--group", "g1"],
    ):
        enqueued = run_cli("task", "enqueue", "--type", "email:send", *q, *args, *url)
        assert enqueued.returncode == 0 and "Enqueued task" in enqueued.stdout, enqueued.stderr
    assert enqueued.stdout.strip().endswith("aggregating")

    pending = run_cli("task", "ls", *q, "--state", "pending", *url)
    assert pending.returncode == 0, pending.stderr
    assert rows(pending.stdout, "ID") == [
        ["ID", "Type", "Payload"], ["p1", "email:send", '{"n": 1}'], ["p2", "email:send", ""],
    ]  # fmt: skip
    scheduled = rows(ok(await ainvoke("task", "ls", *q, "-s", "scheduled", *url)), "ID")
    assert scheduled[0][-1] == "Process In" and re.fullmatch(
        r"in (59m\d+s|1h0m0s)", scheduled[1][-1]
    )
    listed = json.loads(ok(await ainvoke("task", "ls", *q, "-s", "pending", "--json", *url)))
    assert [t["id"] for t in listed] == ["p1", "p2"] and listed[0]["payload"] == '{"n": 1}'
    assert "g1" in ok(await ainvoke("task", "ls", *q, "-s", "aggregating", "-g", "g1", *url))

    shown = ok(await ainvoke("task", "inspect", *q, "--id", "p1", *url))
    assert re.search(r"^State:\s+pending$", shown, re.M) and re.search(
        r"^Retried:\s+0/25$", shown, re.M
    )

    async def state(task_id: str) -> str:
        info = json.loads(ok(await ainvoke("task", "inspect", *q, "-i", task_id, "--json", *url)))
        return str(info["state"])

    assert "now archived" in ok(await ainvoke("task", "archive", *q, "--id", "p1", *url))
    assert await state("p1") == "archived"
    archived = rows(ok(await ainvoke("task", "ls", *q, "-s", "archived", *url)), "ID")
    assert archived[0] == ["ID", "Type", "Payload", "Last Failed", "Last Error"]
    assert "now pending" in ok(await ainvoke("task", "run", *q, "--id", "p1", *url))
    assert await state("p1") == "pending"
    assert "is deleted" in ok(await ainvoke("task", "rm", *q, "--id", "p2", *url))
    line = one_error_line(await ainvoke("task", "run", *q, "--id", "p1", *url))
    assert line == "Error: task 'p1' is already pending"

    assert "1 pending task(s) are now archived" in ok(
        await ainvoke("task", "archiveall", *q, "-s", "pending", *url)
    )
    assert "1 archived task(s) are now pending" in ok(
        await ainvoke("task", "runall", *q, "-s", "archived", *url)
    )
    assert "1 scheduled task(s) are deleted" in ok(
        await ainvoke("task", "deleteall", *q, "-s", "scheduled", *url)
    )
    groups = rows(ok(await ainvoke("group", "ls", *q, *url)), "Group")
    assert groups == [["Group", "Size"], ["g1", "1"]]
    assert "1 aggregating task(s) are now pending" in ok(
        await ainvoke("task", "runall", *q, "-s", "aggregating", "-g", "g1", *url)
    )
    final = json.loads(ok(await ainvoke("task", "ls", *q, "-s", "pending", "--json", *url)))
    assert sorted(t["id"] for t in final) == ["a1", "p1"]


# -- queues ------------------------------------------------------------------------------------


async def test_queue_inspect_history_stats_and_rm(
    url: list[str], queue_name: str, standalone_connector: Connector
) -> None:
    async with Client(standalone_connector) as client:
        await client.enqueue(Task("t", {"i": 1}), queue=queue_name)
    inspected = ok(await ainvoke("queue", "inspect", queue_name, *url))
    assert re.search(rf"^Name:\s+{queue_name}$", inspected, re.M)
    assert rows(inspected, "active")[1] == ["0", "1", "0", "0", "0", "0", "0"]
    history = rows(ok(await ainvoke("queue", "history", queue_name, "--days", "3", *url)), "Date")
    assert history[0] == ["Date (UTC)", "Processed", "Failed", "Error Rate"] and len(history) == 4
    assert ok(await ainvoke("queue", "pause", queue_name, *url)).startswith("Paused")

    stats = ok(await ainvoke("stats", *url))
    assert rows(stats, "active")[0][0] == "active"
    by_queue = {row[0]: row for row in rows(stats, "Queue")[1:]}
    assert by_queue[f"{queue_name} (paused)"][1:4] == ["1", "0", "1"]  # size, active, pending
    assert rows(stats, "Version")[0] == ["Version", "Uptime", "Connections", "Memory Usage",
                                         "Peak Memory Usage"]  # fmt: skip
    data = json.loads(ok(await ainvoke("stats", "--json", *url)))
    assert data["states"]["pending"] >= 1 and data["redis"]["version"]

    line = one_error_line(await ainvoke("queue", "rm", queue_name, *url))
    assert "still has tasks" in line
    assert "Deleted" in ok(await ainvoke("queue", "delete", queue_name, "--force", *url))
    assert queue_name not in ok(await ainvoke("queue", "ls", *url)).split()


async def test_stats_with_a_queue_redis_refuses_to_read_is_one_error_line(
    url: list[str], queue_name: str, standalone_connector: Connector
) -> None:
    """The queues are looked at side by side in a task group, whose error came out as a
    traceback (an ExceptionGroup) instead of the one line every other command gives."""
    await standalone_connector.client.sadd("asynq:queues", queue_name)
    await standalone_connector.client.set(key(queue_name, "pending"), "not a list")
    try:
        line = one_error_line(await ainvoke("stats", *url))
    finally:
        await standalone_connector.client.srem("asynq:queues", queue_name)
        await standalone_connector.client.delete(key(queue_name, "pending"))
    assert line.startswith("Error: Redis answered: ResponseError: WRONGTYPE")


def test_stats_on_the_cluster_shows_cluster_info(redis_cluster: ClusterTarget) -> None:
    stats = ok(invoke("stats", "--cluster-nodes", ",".join(redis_cluster.seeds)))
    assert rows(stats, "State") == [["State", "Known Nodes", "Cluster Size"], ["ok", "6", "3"]]


async def test_cron_ls_and_history_show_a_go_scheduler_entry(
    url: list[str], standalone_connector: Connector
) -> None:
    entry_id = f"entry-{uuid.uuid4().hex[:8]}"
    scheduler_key = f"asynq:schedulers:{{host:1:{entry_id}}}"
    history_key = f"asynq:scheduler_history:{entry_id}"
    entry = SchedulerEntry(
        id=entry_id, spec="@every 30s", task_type="report", task_payload=b'{"a":1}',
        enqueue_options=['Queue("reports")', "MaxRetry(3)"],
        next_enqueue_time=Timestamp(seconds=int(time.time()) + 30),
        prev_enqueue_time=Timestamp(seconds=-62135596800),  # Go's zero time: never
    )  # fmt: skip
    event = SchedulerEnqueueEvent(task_id="t-1", enqueue_time=Timestamp(seconds=int(time.time())))
    redis = standalone_connector.client
    await redis.lpush(scheduler_key, entry.SerializeToString())
    await redis.zadd("asynq:schedulers", {scheduler_key: int(time.time()) + 60})
    await redis.zadd(history_key, {event.SerializeToString(): 1})
    try:
        listed = rows(ok(await ainvoke("cron", "ls", *url)), "EntryID")
        history = rows(ok(await ainvoke("cron", "history", entry_id, *url)), "TaskID")
    finally:
        await redis.zrem("asynq:schedulers", scheduler_key)
        await redis.delete(scheduler_key, history_key)
    assert listed[0] == ["EntryID", "Spec", "Type", "Payload", "Options", "Next", "Prev"]
    row = next(r for r in listed if r[0] == entry_id)
    assert row[1:5] == ["@every 30s", "report", '{"a":1}', 'Queue("reports"), MaxRetry(3)']
    assert re.fullmatch(r"in \d+s", row[5]) and row[6] == "N/A"
    assert history[0] == ["TaskID", "EnqueuedAt"] and history[1][0] == "t-1"


# -- errors ------------------------------------------------------------------------------------


def test_unknown_queue_and_task_are_one_readable_line(url: list[str], queue_name: str) -> None:
    line = one_error_line(invoke("queue", "inspect", queue_name, *url))
    assert line == f"Error: queue '{queue_name}' does not exist"
    invoke("task", "enqueue", "-t", "x", "-q", queue_name, *url)
    line = one_error_line(invoke("task", "inspect", "-q", queue_name, "-i", "nope", *url))
    assert line == f"Error: no task 'nope' in queue '{queue_name}'"


def test_unreachable_redis_is_one_readable_line() -> None:
    port = free_port()
    started = time.monotonic()
    result = invoke("queue", "ls", "--redis-url", f"redis://127.0.0.1:{port}/0")
    assert time.monotonic() - started < 10  # the CLI gives up after a few seconds
    assert f"could not reach Redis at 127.0.0.1:{port}" in one_error_line(result)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["task", "ls", "-q", "q", "-s", "running"], "Invalid value for '-s' / '--state'"),
        (["task", "enqueue", "-t", "x", "--process-in", "5x"], "'5x' is not a duration"),
        (["task", "enqueue", "-t", "x", "--deadline", "2030-01-01T00:00:00"], "no time zone"),
        (["queue", "history", "q", "--days", "0"], "Invalid value for '-x' / '--days'"),
        (["task", "enqueue", "-t", "x", "--retention", "1e300"], "'1e300' is too long a duration"),
        (["task", "enqueue", "-t", "x", "-r", str(2**31)], "is not in the range 0<=x<=2147483647"),
    ],
)
def test_bad_flag_value_is_a_usage_error(args: list[str], message: str) -> None:
    assert message in one_error_line(invoke(*args), exit_code=2)


def test_stats_and_queue_ls_skip_a_queue_name_asyncq_refuses(
    redis_server: StandaloneTarget, url: list[str]
) -> None:
    admin = redis.Redis.from_url(redis_server.url)
    ok(invoke("task", "enqueue", "-t", "x", "-q", "stats-good", *url))
    admin.sadd("asynq:queues", "legacy{x}")  # a name Go's asynq accepts
    try:
        result = invoke("stats", *url)
        assert result.exit_code == 0, result.output
        assert "skipped queue 'legacy{x}'" in result.stderr
        assert "stats-good" in result.stdout
    finally:
        admin.srem("asynq:queues", "legacy{x}")


async def test_task_ls_and_inspect_show_times_past_what_a_datetime_holds(
    url: list[str], queue_name: str, standalone_connector: Connector
) -> None:
    """Another writer's deadline of int64's largest or smallest second, or a schedule in
    milliseconds, ended `task ls` and `task inspect` in a traceback. They show the
    latest or earliest time a datetime holds, the year in four digits as Go prints it."""
    redis_client = standalone_connector.client
    in_milliseconds = time.time() * 1000
    for task_id, deadline in (("late", 2**63 - 1), ("early", -(2**63))):
        msg = TaskMessage(id=task_id, type="t", queue=queue_name, deadline=deadline)
        await redis_client.hset(
            key(queue_name, f"t:{task_id}"),
            mapping={"msg": msg.SerializeToString(), "state": "scheduled"},
        )
        await redis_client.zadd(key(queue_name, "scheduled"), {task_id: in_milliseconds})
    await redis_client.sadd("asynq:queues", queue_name)
    q = ["--queue", queue_name]
    listed = rows(ok(await ainvoke("task", "ls", *q, "-s", "scheduled", *url)), "ID")
    assert [row[0] for row in listed[1:]] == ["early", "late"]
    late = ok(await ainvoke("task", "inspect", *q, "-i", "late", *url))
    assert re.search(r"^Deadline:\s+9999-12-31 23:59:59 UTC$", late, re.M)
    assert re.search(r"^Next Process At:\s+9999-12-31 23:59:59 UTC$", late, re.M)
    early = ok(await ainvoke("task", "inspect", *q, "-i", "early", *url))
    assert re.search(r"^Deadline:\s+0001-01-01 00:00:00 UTC$", early, re.M)
    shown = json.loads(ok(await ainvoke("task", "inspect", *q, "-i", "early", "--json", *url)))
    assert shown["deadline"] == "0001-01-01T00:00:00Z"


@pytest.mark.parametrize("terminal", [False, True], ids=["plain", "rich"])
async def test_what_redis_holds_is_printed_as_text_not_obeyed(
    url: list[str],
    queue_name: str,
    standalone_connector: Connector,
    monkeypatch: pytest.MonkeyPatch,
    terminal: bool,
) -> None:
    """Task data and names are whoever wrote them: an escape sequence in a payload reached
    the user's terminal as it was, and on a terminal rich read "[admin]" in an error as a
    style (it vanished) and failed on "[/]" with a traceback."""
    monkeypatch.setattr("asyncq.cli.render._rich", lambda: terminal)
    monkeypatch.setenv("COLUMNS", "250")  # so that rich folds no cell
    redis_client = standalone_connector.client
    msg = TaskMessage(
        id="odd", type="t", queue=queue_name, payload=b"\x1b]0;retitled\x07\x1b[2J",
        error_msg="PermissionError: needs [admin] role [/]", last_failed_at=int(time.time()),
    )  # fmt: skip
    await redis_client.hset(
        key(queue_name, "t:odd"), mapping={"msg": msg.SerializeToString(), "state": "archived"}
    )
    await redis_client.zadd(key(queue_name, "archived"), {"odd": time.time()})
    odd_queue = f"{queue_name}\x1b[31m"
    await redis_client.sadd("asynq:queues", queue_name, odd_queue)
    try:
        q = ["--queue", queue_name]
        listed = ok(await ainvoke("task", "ls", *q, "-s", "archived", *url))
        shown = ok(await ainvoke("task", "inspect", *q, "-i", "odd", *url))
        names = ok(await ainvoke("queue", "ls", *url))
    finally:
        await redis_client.srem("asynq:queues", odd_queue)
    for output in (listed, shown):
        assert "\x1b" not in output and "\x07" not in output
        assert "\\x1b]0;retitled\\x07\\x1b[2J" in output
        assert "needs [admin] role [/]" in output
    assert "\x1b" not in names and f"{queue_name}\\x1b[31m" in names


@pytest.mark.parametrize("command", ["inspect", "history"])
def test_an_unknown_queue_among_several_does_not_hide_the_others(
    command: str, url: list[str]
) -> None:
    ok(invoke("task", "enqueue", "-t", "x", "-q", "shown-too", *url))
    result = invoke("queue", command, "no-such-queue", "shown-too", *url)
    assert result.exit_code == 1
    assert "queue 'no-such-queue' does not exist" in result.stderr
    assert "shown-too" in result.stdout


@pytest.mark.parametrize("args", [["--version"], ["-V"], ["version"]])
def test_the_version_is_printed_by_flag_and_by_command(args: list[str]) -> None:
    assert ok(invoke(*args)).strip() == f"asyncq {asyncq.__version__}"


def test_a_flag_wins_over_the_other_topology_set_in_the_environment(url: list[str]) -> None:
    environment = {**dict.fromkeys(ENV_NAMES, None), "ASYNCQ_CLUSTER_NODES": "127.0.0.1:1"}
    result = CliRunner().invoke(cli, ["queue", "ls", *url], env=environment)
    assert result.exit_code == 0, result.output  # --redis-url, not the cluster of the env
    both = invoke("queue", "ls", "--cluster-nodes", "127.0.0.1:1", *url)
    assert "give --cluster-nodes or --redis-url, not both" in one_error_line(both, exit_code=2)
    # Both from the environment: the message named flags nobody gave.
    environment["ASYNCQ_REDIS_URL"] = url[1]
    from_env = CliRunner().invoke(cli, ["queue", "ls"], env=environment)
    line = one_error_line(from_env, exit_code=2)
    assert "ASYNCQ_CLUSTER_NODES and ASYNCQ_REDIS_URL are both set in the environment" in line


def test_a_ca_file_is_for_tls_and_one_from_the_environment_leaves_plain_urls_alone(
    url: list[str], tmp_path: Path
) -> None:
    ca_file = tmp_path / "ca.crt"
    ca_file.write_text("not read for a plain URL")
    environment = {**dict.fromkeys(ENV_NAMES, None), "ASYNCQ_REDIS_TLS_CA_CERTS": str(ca_file)}
    result = CliRunner().invoke(cli, ["queue", "ls", *url], env=environment)
    assert result.exit_code == 0, result.output
    given = invoke("queue", "ls", *url, "--tls-ca-certs", str(ca_file))
    assert "--tls-ca-certs needs --cluster-nodes or a rediss:// URL" in one_error_line(
        given, exit_code=2
    )


def test_a_blank_task_type_is_a_usage_error_and_nothing_is_written(url: list[str]) -> None:
    result = invoke("task", "enqueue", "-t", " ", "-q", "blank-type", *url)
    assert "task type must be a non-blank str" in one_error_line(result, exit_code=2)
    assert ok(invoke("queue", "ls", *url)).split().count("blank-type") == 0


# -- with a running worker: pause/resume, cancel, server ls -----------------------------------

APP = textwrap.dedent(
    """
    import asyncio, os, pathlib
    import asyncq

    MARKS = pathlib.Path(os.environ["ASYNCQ_TEST_MARKS"])
    mux = asyncq.ServeMux()

    @mux.handler("mark")
    async def mark(task):
        (MARKS / f"done-{task.id}").write_text("1")

    @mux.handler("endless")
    async def endless(task):
        (MARKS / f"started-{task.id}").write_text("1")
        await asyncio.sleep(3600)
    """
)


@dataclass
class Worker:
    proc: subprocess.Popen[str]
    queue: str
    other_queue: str
    marks: Path


@pytest.fixture(scope="module")
def worker(
    redis_server: StandaloneTarget, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Worker]:
    """One worker process for the module, serving two fresh queues."""
    app_dir = tmp_path_factory.mktemp("cli-app")
    (app_dir / "app.py").write_text(APP)
    (app_dir / "marks").mkdir()
    queue, other = f"cli-{uuid.uuid4().hex[:8]}", f"cli-other-{uuid.uuid4().hex[:8]}"
    env = {k: v for k, v in os.environ.items() if k not in ENV_NAMES}
    env["ASYNCQ_TEST_MARKS"] = str(app_dir / "marks")
    proc = subprocess.Popen(
        [sys.executable, "-m", "asyncq", "worker", "app:mux", "--redis-url", redis_server.url,
         "-q", f"{queue}=1", "-q", f"{other}=1", "--concurrency", "4", "--poll-interval", "0.05",
         "--heartbeat-interval", "0.2", "--shutdown-timeout", "1"],
        cwd=app_dir, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    yield Worker(proc, queue, other, app_dir / "marks")
    proc.send_signal(signal.SIGTERM)
    try:
        proc.communicate(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()


@pytest.fixture
async def client(standalone_connector: Connector) -> AsyncIterator[Client]:
    async with Client(standalone_connector) as made:
        yield made


async def _marked(worker: Worker, client: Client, queue: str) -> str:
    """Enqueue a ``mark`` task and wait until the worker has run it."""
    info = await client.enqueue(Task("mark"), queue=queue)
    done = worker.marks / f"done-{info.id}"
    await eventually(done.exists, within=20, what=f"the worker to run a task of {queue}")
    return info.id


async def test_queue_pause_stops_the_worker_and_resume_lets_it_continue(
    worker: Worker, client: Client, url: list[str]
) -> None:
    await _marked(worker, client, worker.queue)  # the worker runs and the queue exists
    paused = run_cli("queue", "pause", worker.queue, *url)
    assert paused.returncode == 0 and paused.stdout.startswith("Paused"), paused.stderr
    held = await client.enqueue(Task("mark"), queue=worker.queue)
    for _ in range(3):  # the worker goes on polling (and serving the other queue)
        await _marked(worker, client, worker.other_queue)
    assert not (worker.marks / f"done-{held.id}").exists()
    pending = run_cli("task", "ls", "-q", worker.queue, "-s", "pending", *url)
    assert [row[0] for row in rows(pending.stdout, "ID")[1:]] == [held.id]

    resumed = run_cli("queue", "resume", worker.queue, *url)
    assert resumed.returncode == 0 and resumed.stdout.startswith("Resumed"), resumed.stderr
    await eventually((worker.marks / f"done-{held.id}").exists, within=20, what="resumed work")
    assert "is not paused" in one_error_line(await ainvoke("queue", "unpause", worker.queue, *url))


async def test_server_ls_and_task_cancel_on_a_running_handler(
    worker: Worker, client: Client, url: list[str], standalone_connector: Connector
) -> None:
    info = await client.enqueue(Task("endless"), queue=worker.queue)
    await eventually((worker.marks / f"started-{info.id}").exists, within=20)

    async def busy_row() -> list[str] | None:
        listed = rows(ok(await ainvoke("server", "ls", *url)), "Host")
        assert listed[0] == ["Host", "PID", "State", "Active Workers", "Queues", "Started"]
        mine = [row for row in listed[1:] if row[1] == str(worker.proc.pid)]
        return mine[0] if mine and mine[0][3] == "1/4" else None

    async def shows_busy_row() -> bool:
        return await busy_row() is not None

    await eventually(shows_busy_row, within=10, what="server ls to show the running task")
    row = await busy_row()
    assert row is not None and row[2] == "active"
    assert row[4] == ", ".join(sorted([f"{worker.queue}:1", f"{worker.other_queue}:1"]))
    assert row[5].endswith(" ago")

    async def subscribed() -> bool:
        [(_, count)] = await standalone_connector.client.pubsub_numsub("asynq:cancel")
        return bool(count)

    await eventually(subscribed, within=10, what="the worker to listen for cancel requests")
    cancel = run_cli("task", "cancel", info.id, *url)
    assert cancel.returncode == 0 and info.id in cancel.stdout, cancel.stderr

    async def retrying() -> bool:
        return await task_state(standalone_connector, worker.queue, info.id) == "retry"

    await eventually(retrying, within=10, what="the cancelled task to wait for a retry")
    shown = json.loads(ok(await ainvoke("task", "inspect", "-q", worker.queue, "-i", info.id,
                                        "--json", *url)))  # fmt: skip
    assert shown["state"] == "retry" and shown["last_error"].startswith("TaskCanceledError")
    assert shown["retried"] == 1
    retry = rows(ok(await ainvoke("task", "ls", "-q", worker.queue, "-s", "retry", *url)), "ID")
    assert retry[0][3:] == ["Next Retry", "Last Error", "Last Failed", "Retried", "Max Retry"]
    assert retry[1][0] == info.id and retry[1][4].startswith("TaskCanceledError")
    ok(await ainvoke("task", "delete", "-q", worker.queue, "-i", info.id, *url))
