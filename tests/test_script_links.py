"""Script calls travel over lean pipelined links, and fall back to redis-py when they must."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Iterator

import pytest
from redis import exceptions as rx

from asyncq import Client, Connector, RedisConnector, Task
from asyncq._broker.scripts import LuaScript, ScriptHeader
from asyncq.testing import RedisServerProcess, eventually


def _script(source: str) -> LuaScript:
    sha = hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest()
    return LuaScript("test", source, sha, ScriptHeader({}, {}, (), ""))


PUSH = _script("return redis.call('RPUSH', KEYS[1], ARGV[1])")


async def _run_on_node(connector: Connector, key: str, *command: str) -> None:
    node = connector.node_client(connector.node_of(key))
    try:
        await node.execute_command(*command)
    finally:
        await node.aclose()


async def test_scripts_run_over_a_link_to_the_node(connector: Connector, queue_name: str) -> None:
    key = f"asynq:{{{queue_name}}}:list"
    assert [await connector.run_script(PUSH, [key], [str(i)]) for i in range(3)] == [1, 2, 3]
    # Many calls in flight on one link get their own replies, in order.
    replies = await asyncio.gather(*(connector.run_script(PUSH, [key], ["x"]) for _ in range(200)))
    assert sorted(replies) == list(range(4, 204))
    assert connector._links is not None
    assert connector.node_of(key) in connector._links.usable_addresses()


async def test_an_empty_script_cache_is_refilled(connector: Connector, queue_name: str) -> None:
    key = f"asynq:{{{queue_name}}}:list"
    await connector.run_script(PUSH, [key], ["a"])
    # What a restarted server or a promoted replica looks like: the script is unknown.
    await _run_on_node(connector, key, "SCRIPT", "FLUSH")
    assert await connector.run_script(PUSH, [key], ["b"]) == 2


async def test_a_failing_script_raises_redis_error(connector: Connector, queue_name: str) -> None:
    key = f"asynq:{{{queue_name}}}:string"
    await connector.execute("SET", key, "not a list")
    with pytest.raises(rx.ResponseError, match="WRONGTYPE"):
        await connector.run_script(PUSH, [key], ["x"])


async def test_a_dropped_link_is_reopened(connector: Connector, queue_name: str) -> None:
    key = f"asynq:{{{queue_name}}}:list"
    await connector.run_script(PUSH, [key], ["a"])
    await _run_on_node(connector, key, "CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")
    assert await connector.run_script(PUSH, [key], ["b"]) == 2
    assert await connector.run_script(PUSH, [key], ["c"]) == 3


@pytest.fixture
def private_server() -> Iterator[RedisServerProcess]:
    server = RedisServerProcess().start()
    yield server
    server.stop()


async def test_links_use_the_password_and_database_of_the_url(
    private_server: RedisServerProcess,
) -> None:
    admin = private_server.admin_client()
    admin.config_set("requirepass", "s3cret")
    url = f"redis://:s3cret@{private_server.host}:{private_server.port}/3"
    async with RedisConnector(url) as connector, Client(connector) as client:
        info = await client.enqueue(Task("t"), queue="q")
        assert connector._links is not None and connector._links.usable_addresses()
    admin.execute_command("AUTH", "s3cret")
    admin.execute_command("SELECT", "3")
    assert admin.execute_command("LRANGE", "asynq:{q}:pending", 0, -1) == [info.id]


async def test_a_paused_server_delays_a_call_but_loses_nothing(
    private_server: RedisServerProcess,
) -> None:
    admin = private_server.admin_client()
    async with RedisConnector(private_server.url, socket_timeout=0.2) as connector:
        await connector.run_script(PUSH, ["k"], ["a"])
        # No reply within the socket timeout: the link gives the call up to redis-py,
        # whose retries last until Redis answers again.
        admin.execute_command("CLIENT", "PAUSE", "800", "ALL")
        assert await connector.run_script(PUSH, ["k"], ["b"]) in (2, 3)
        assert await connector.run_script(PUSH, ["k"], ["c"]) in (3, 4)
    values = admin.execute_command("LRANGE", "k", 0, -1)
    assert values[0] == "a" and values[-1] == "c" and "b" in values


ECHO = _script("return ARGV[1]")


async def test_a_call_sent_again_after_a_lost_reply_carries_the_resend_arguments(
    private_server: RedisServerProcess,
) -> None:
    """The first send may have run although its reply was lost: later sends say so."""
    admin = private_server.admin_client()
    async with RedisConnector(private_server.url, socket_timeout=0.2) as connector:
        assert await connector.run_script(ECHO, ["k"], ["first"], resend=["again"]) == b"first"
        admin.execute_command("CLIENT", "PAUSE", "800", "ALL")
        # The link's send times out for sure; the reply comes from a later send.
        assert await connector.run_script(ECHO, ["k"], ["first"], resend=["again"]) == b"again"


async def test_an_enqueue_with_its_own_id_survives_a_lost_reply(
    private_server: RedisServerProcess,
) -> None:
    """Whether or not the first send ran, the call succeeds and the task is stored once."""
    admin = private_server.admin_client()
    async with (
        RedisConnector(private_server.url, socket_timeout=0.2) as connector,
        Client(connector) as client,
    ):
        await client.enqueue(Task("warm"), queue="q")
        admin.execute_command("CLIENT", "PAUSE", "800", "ALL")
        info = await client.enqueue(Task("mine", {"n": 1}), queue="q", task_id="order-42")
    assert info.id == "order-42"
    assert admin.execute_command("LRANGE", "asynq:{q}:pending", 0, -1).count("order-42") == 1


async def test_a_link_without_a_transport_is_refused_and_its_socket_closed(
    private_server: RedisServerProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A loop whose transport the link cannot keep: the call goes through redis-py, and the
    connection the loop opened for the link does not stay open on the server."""
    from asyncq._cluster import links

    class MissesItsTransport(links.ScriptLink):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            pass

    monkeypatch.setattr(links, "ScriptLink", MissesItsTransport)
    admin = private_server.admin_client()
    async with RedisConnector(private_server.url) as connector:
        assert await connector.run_script(PUSH, ["k"], ["a"]) == 1
        assert connector._links is not None and not connector._links.usable_addresses()

        async def only_redis_py_and_admin_connected() -> bool:
            return int(admin.info("clients")["connected_clients"]) == 2

        await eventually(only_redis_py_and_admin_connected, what="the refused socket closed")
