"""The scheduler: cron specs, asynq's entry format, and exactly one enqueue per fire."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from zoneinfo import ZoneInfo

import pytest

from asyncq import (
    Connector,
    Inspector,
    InvalidOptionError,
    PeriodicTaskConfig,
    PeriodicTaskManager,
    RedisClusterConnector,
    RedisConnector,
    Scheduler,
    Task,
)
from asyncq._broker.rdb import Broker
from asyncq._broker.scripts import load_script
from asyncq._proto.asynq_pb2 import TaskMessage
from asyncq._scheduler.cron import parse_schedule
from asyncq._scheduler.goformat import go_duration, go_option_strings, go_unix_date
from asyncq.scheduler import entry_message
from asyncq.testing import ManualClock
from tests.worker_helpers import key

# The entry of asynq's scenario 10: Register("@every 30s", tick, Queue("default")).
GO_ENTRY = bytes.fromhex(
    "0a2433626164643238322d626634652d346139382d626533302d383461356666636634323936120a4065"
    "76657279203330731a047469636b2a105175657565282264656661756c742229320608feb3a6d8063a0b"
    "088092b8c398feffffff01"
)


def utc(
    year: int,
    month: int,
    day: int,
    hour: int = 0,
    minute: int = 0,
    second: int = 0,
    microsecond: int = 0,
) -> datetime:
    return datetime(year, month, day, hour, minute, second, microsecond, tzinfo=UTC)


def test_entry_bytes_are_asynqs() -> None:
    data = entry_message(
        "3badd282-bf4e-4a98-be30-84a5ffcf4296",
        "@every 30s",
        Task("tick"),
        go_option_strings({"queue": "default"}),
        datetime.fromtimestamp(1795791358, UTC),
        None,
    )
    assert data == GO_ENTRY


def test_go_formats() -> None:
    assert [go_duration(s) for s in (90, 3600, 1.5, 0.25, 86400)] == [
        "1m30s", "1h0m0s", "1.5s", "250ms", "24h0m0s",
    ]  # fmt: skip
    assert go_unix_date(utc(2030, 1, 1, 9, 5, 7)) == "Tue Jan  1 09:05:07 UTC 2030"
    assert go_option_strings(
        {"queue": "q", "max_retry": 3, "timeout": 90, "unique": timedelta(hours=1),
         "retention": 60, "group": "g", "task_id": "t"}
    ) == ['Queue("q")', "MaxRetry(3)", "Timeout(1m30s)", "Unique(1h0m0s)", 'TaskID("t")',
          "Retention(1m0s)", 'Group("g")']  # fmt: skip


@pytest.mark.parametrize(
    ("spec", "after", "expected"),
    [
        ("*/15 * * * *", utc(2030, 1, 1, 10, 7), utc(2030, 1, 1, 10, 15)),
        ("0 9 * * mon-fri", utc(2030, 1, 5, 12, 0), utc(2030, 1, 7, 9, 0)),  # Sat -> Mon
        ("0 0 1 * *", utc(2030, 1, 15), utc(2030, 2, 1)),
        ("@hourly", utc(2030, 1, 1, 10, 0), utc(2030, 1, 1, 11, 0)),
        ("@daily", utc(2030, 1, 1, 10, 0), utc(2030, 1, 2)),
        ("@every 30s", utc(2030, 1, 1, 0, 0, 10), utc(2030, 1, 1, 0, 0, 30)),
        ("0 12 13 * fri", utc(2030, 1, 1), utc(2030, 1, 4, 12, 0)),  # day OR weekday
        # A star with step 1 is a star for the day rule, as in robfig/cron: Mondays only.
        ("0 0 */1 * mon", utc(2030, 1, 1, 12), utc(2030, 1, 7)),
        ("0 0 *,5 * mon", utc(2030, 1, 1, 12), utc(2030, 1, 7)),
        ("0 0 */2 * mon", utc(2030, 1, 1, 12), utc(2030, 1, 3)),  # a step above 1: day OR weekday
        ("CRON_TZ=Asia/Tokyo 0 9 * * *", utc(2030, 1, 1, 1, 0), utc(2030, 1, 2, 0, 0)),
    ],
)
def test_next_fire(spec: str, after: datetime, expected: datetime) -> None:
    assert parse_schedule(spec).next_after(after) == expected


def test_location_and_daylight_saving() -> None:
    new_york = ZoneInfo("America/New_York")
    schedule = parse_schedule("30 2 * * *", new_york)
    # 2030-03-10 02:30 does not exist in New York (clocks jump to 03:00): no fire that day.
    fire = schedule.next_after(utc(2030, 3, 9, 12))
    assert fire is not None and fire.astimezone(new_york) == datetime(
        2030, 3, 11, 2, 30, tzinfo=new_york
    )
    winter = parse_schedule("0 9 * * *", new_york).next_after(utc(2030, 1, 1))
    assert winter == utc(2030, 1, 1, 14)  # 09:00 EST is 14:00 UTC


@pytest.mark.parametrize("spec", ["* * * *", "61 * * * *", "@every", "@every soon", "0 0 * * xyz"])
def test_bad_specs_are_refused(spec: str) -> None:
    scheduler = Scheduler(RedisConnector())
    with pytest.raises(InvalidOptionError, match="bad schedule"):
        scheduler.register(spec, Task("t"))


@pytest.mark.parametrize(
    ("location", "message"),
    [("Mars/Olympus", "no time zone known here"), ("../etc", "no time zone known here"),
     (5, "must be a tzinfo or a time zone name")],
)  # fmt: skip
def test_an_unknown_location_is_a_bad_option(location: object, message: str) -> None:
    """It raised ZoneInfoNotFoundError (or ValueError), unlike every other bad option."""
    with pytest.raises(InvalidOptionError, match=message):
        Scheduler(RedisConnector(), location=location)  # type: ignore[arg-type]


async def test_fires_at_the_right_times_once_each(connector: Connector, queue_name: str) -> None:
    clock = ManualClock(utc(2030, 1, 1, 8, 59, 30).timestamp())
    scheduler = Scheduler(connector, location="Europe/Paris", clock=clock)
    entry = scheduler.register("0 10 * * *", Task("report", {"n": 1}), queue=queue_name)
    assert scheduler.next_fire(entry) == utc(2030, 1, 1, 9, 0)  # 10:00 in Paris
    await scheduler.tick()
    assert await connector.client.llen(key(queue_name, "pending")) == 0
    clock.set(utc(2030, 1, 1, 9, 0, 1).timestamp())
    await scheduler.tick()
    await scheduler.tick()  # the same fire is not enqueued twice
    assert await connector.client.llen(key(queue_name, "pending")) == 1
    assert scheduler.next_fire(entry) == utc(2030, 1, 2, 9, 0)
    history = await connector.client.zrange(f"asynq:scheduler_history:{entry}", 0, -1)
    assert len(history) == 1


async def test_an_entry_history_goes_away_a_month_after_the_entry_stops_firing(
    connector: Connector, queue_name: str
) -> None:
    """asynq deletes its entries' history at shutdown; asyncq keeps it, as every scheduler
    registering the same entry shares it, so it must expire once no fire renews it."""
    clock = ManualClock(utc(2030, 1, 1, 0, 0, 30).timestamp())
    scheduler = Scheduler(connector, clock=clock)
    entry = scheduler.register("0 0 * * *", Task("nightly"), queue=queue_name)
    history = f"asynq:scheduler_history:{entry}"
    month, day = 30 * 24 * 3600, 24 * 3600
    clock.set(utc(2030, 1, 2, 0, 0, 1).timestamp())
    await scheduler.tick()
    assert await connector.client.zcard(history) == 1
    # The next fire is due a day later; the history lasts a month past that.
    assert month + day - 60 <= await connector.client.ttl(history) <= month + day
    clock.set(utc(2030, 1, 3, 0, 0, 1).timestamp())
    await scheduler.tick()
    assert await connector.client.zcard(history) == 2
    assert month + day - 60 <= await connector.client.ttl(history) <= month + day


@pytest.mark.parametrize("replicas", [2, 3])
async def test_several_schedulers_enqueue_each_fire_once(
    connector: Connector, queue_name: str, replicas: int
) -> None:
    clock = ManualClock(utc(2030, 1, 1, 0, 0, 0).timestamp())
    schedulers = [Scheduler(connector, clock=clock) for _ in range(replicas)]
    ids = {s.register("@every 10s", Task("beat"), queue=queue_name) for s in schedulers}
    assert len(ids) == 1, "the same entry must get the same id in every scheduler"
    for _ in range(5):
        clock.advance(10)
        await asyncio.gather(*(s.tick() for s in schedulers))
    assert await connector.client.llen(key(queue_name, "pending")) == 5
    (entry,) = ids
    assert await connector.client.zcard(f"asynq:scheduler_history:{entry}") == 5


async def test_an_archived_copy_does_not_stop_the_firing(
    connector: Connector, queue_name: str
) -> None:
    clock = ManualClock(utc(2030, 1, 1).timestamp())
    scheduler = Scheduler(connector, clock=clock)
    scheduler.register("@every 1m", Task("job"), queue=queue_name)
    clock.advance(60)
    await scheduler.tick()
    async with Inspector(connector) as inspector:
        assert await inspector.archive_all(queue_name, "pending") == 1
    clock.advance(60)
    await scheduler.tick()
    assert await connector.client.llen(key(queue_name, "pending")) == 1


async def test_hooks_and_entries_for_asynqs_tools(connector: Connector, queue_name: str) -> None:
    seen: list[str] = []
    clock = ManualClock(utc(2030, 1, 1).timestamp())

    async def before(task: Task, options: object) -> None:
        seen.append(f"before {task.type}")

    def after(info: object, error: BaseException | None) -> None:
        seen.append(f"after {getattr(info, 'queue', None)} {error}")

    scheduler = Scheduler(connector, clock=clock, before_enqueue=before, after_enqueue=after)
    entry = scheduler.register("@every 1m", Task("tick"), queue=queue_name, max_retry=2)
    await scheduler.heartbeat()
    try:
        async with Inspector(connector) as inspector:
            listed = [e for e in await inspector.scheduler_entries() if e.id == entry]
        assert listed[0].options == [f'Queue("{queue_name}")', "MaxRetry(2)"]
        assert listed[0].next_enqueue == utc(2030, 1, 1, 0, 1) and listed[0].prev_enqueue is None
        clock.advance(60)
        await scheduler.tick()
        assert seen == ["before tick", f"after {queue_name} None"]
    finally:
        await connector.client.zrem("asynq:schedulers", f"asynq:schedulers:{{{scheduler.id}}}")


async def test_entries_that_differ_only_in_headers_are_two_entries_each_fired(
    connector: Connector, queue_name: str
) -> None:
    """They used to get one id: in one process the second replaced the first, and across
    processes they shared one fire lock, so only one tenant's task was ever enqueued."""
    clock = ManualClock(utc(2030, 1, 1, 0, 0, 10).timestamp())
    first, second = Scheduler(connector, clock=clock), Scheduler(connector, clock=clock)
    a = first.register("@every 60s", Task("report", None, {"tenant": "a"}), queue=queue_name)
    b = second.register("@every 60s", Task("report", None, {"tenant": "b"}), queue=queue_name)
    assert a != b
    both = Scheduler(connector, clock=clock)
    both.register("@every 60s", Task("report", None, {"tenant": "a"}), queue=queue_name)
    both.register("@every 60s", Task("report", None, {"tenant": "b"}), queue=queue_name)
    assert sorted(both.entry_ids) == sorted([a, b])
    clock.advance(60)
    await first.tick()
    await second.tick()
    raw = await connector.client.lrange(key(queue_name, "pending"), 0, -1)
    messages = [await connector.client.hget(key(queue_name, f"t:{i.decode()}"), "msg") for i in raw]
    tenants = sorted(TaskMessage.FromString(m).headers["tenant"] for m in messages)
    assert tenants == ["a", "b"]


def test_an_entry_without_headers_keeps_its_id() -> None:
    """Ids name fire locks and history keys: a new release must not change them."""
    scheduler = Scheduler(RedisConnector(), location="UTC")
    entry = scheduler.register("@every 60s", Task("report", {"n": 1}), queue="q", max_retry=3)
    assert entry == "ba3549c2-2036-51c4-b245-dbf41eb6855a"
    # An option given as None is left out, as enqueueing leaves it out: the same entry.
    again = Scheduler(RedisConnector(), location="UTC").register(
        "@every 60s", Task("report", {"n": 1}), queue="q", max_retry=3, deadline=None, group=None
    )
    assert again == entry


async def test_no_catch_up_still_fires_on_time(connector: Connector, queue_name: str) -> None:
    """misfire_grace=0 means "skip what was missed", not "never fire": a loop always wakes
    a little after the fire, and every fire used to be skipped as missed."""
    clock = ManualClock(utc(2030, 1, 1, 0, 0, 30).timestamp())
    scheduler = Scheduler(connector, misfire_grace=0, clock=clock)
    scheduler.register("@every 60s", Task("tick"), queue=queue_name)
    clock.set(utc(2030, 1, 1, 0, 1, 0, 300_000).timestamp())  # woke 0.3 s after the fire
    await scheduler.tick()
    assert await connector.client.llen(key(queue_name, "pending")) == 1
    clock.set(utc(2030, 1, 1, 0, 3, 5).timestamp())  # paused past two fires: skipped
    await scheduler.tick()
    assert await connector.client.llen(key(queue_name, "pending")) == 1


async def test_periodic_task_manager_syncs_entries(connector: Connector, queue_name: str) -> None:
    configs = [PeriodicTaskConfig("@hourly", Task("a"), {"queue": queue_name})]
    scheduler = Scheduler(connector)
    manager = PeriodicTaskManager(scheduler, lambda: configs)
    await manager.sync_now()
    (first,) = scheduler.entry_ids
    configs = [
        PeriodicTaskConfig("@hourly", Task("a"), {"queue": queue_name}),
        PeriodicTaskConfig("@daily", Task("b"), {"queue": queue_name}),
    ]
    await manager.sync_now()
    assert len(scheduler.entry_ids) == 2 and first in scheduler.entry_ids
    configs = [PeriodicTaskConfig("@daily", Task("b"), {"queue": queue_name})]
    await manager.sync_now()
    assert len(scheduler.entry_ids) == 1 and first not in scheduler.entry_ids


async def test_a_bad_config_does_not_hold_back_the_good_ones(
    connector: Connector, queue_name: str
) -> None:
    scheduler = Scheduler(connector)
    stale = scheduler.register("@daily", Task("stale"), queue=queue_name)
    configs = [
        PeriodicTaskConfig("@hourly", Task("a"), {"queue": queue_name}),
        PeriodicTaskConfig("61 * * * *", Task("typo"), {"queue": queue_name}),
        PeriodicTaskConfig("@daily", Task("c"), {"queue": queue_name}),
    ]
    with pytest.raises(InvalidOptionError, match=r"1 periodic task config.*'61 \* \* \* \*'"):
        scheduler.sync(configs)
    # The good ones are in effect (entry ids are the same in every process), the stale
    # one is gone.
    other = Scheduler(connector)
    good = {other.register(c.spec, c.task, **c.options) for c in configs if c.task.type != "typo"}  # type: ignore[arg-type]
    assert set(scheduler.entry_ids) == good
    assert stale not in scheduler.entry_ids


@pytest.mark.parametrize(("spec", "seconds"), [("@every 1.5s", 1), ("@every 1m0.1s", 60)])
def test_every_keeps_whole_seconds_and_always_moves_forward(spec: str, seconds: int) -> None:
    schedule = parse_schedule(spec)
    assert schedule.interval == seconds  # as asynq's cron library: the fraction is dropped
    start = utc(2030, 1, 1).timestamp()
    for step in range(2_000):  # moments with every kind of fraction, fires included
        moment = datetime.fromtimestamp(start + step * 0.37, UTC)
        fire = schedule.next_after(moment)
        assert fire is not None and fire > moment
        assert fire.timestamp() % seconds == 0


def test_the_hour_the_clocks_repeat_keeps_an_hourly_or_finer_spec_firing() -> None:
    new_york = ZoneInfo("America/New_York")  # 2030-11-03: 01:00-01:59 comes twice
    quarter = parse_schedule("*/15 * * * *", new_york)
    fires, moment = [], utc(2030, 11, 3, 4, 50)
    for _ in range(10):
        fire = quarter.next_after(moment)
        assert fire is not None
        fires.append(moment := fire)
    assert fires[0] == utc(2030, 11, 3, 5, 0) and fires[-1] == utc(2030, 11, 3, 7, 15)
    assert {later - earlier for earlier, later in pairwise(fires)} == {timedelta(minutes=15)}
    # A job at one hour of the day fires once, at the first of the two 01:30s.
    daily = parse_schedule("30 1 * * *", new_york)
    first = daily.next_after(utc(2030, 11, 2, 12))
    assert first == utc(2030, 11, 3, 5, 30)
    assert daily.next_after(first) == utc(2030, 11, 4, 6, 30)
    # Asked during the second 01:00-01:59, it does not fire again at the second 01:30.
    assert daily.next_after(utc(2030, 11, 3, 6, 10)) == utc(2030, 11, 4, 6, 30)


@pytest.mark.parametrize(
    ("zone", "start"),
    [
        ("Pacific/Chatham", utc(2030, 4, 6, 12, 50)),  # repeats 02:45-03:44: across an hour
        ("Antarctica/Troll", utc(2030, 10, 26, 22, 50)),  # goes back two hours
    ],
)
def test_a_repeat_that_crosses_the_hour_loses_no_fire(zone: str, start: datetime) -> None:
    """The next fire used to come from the first wall hour with one, which skipped the
    repeated stretch's readings of the following hour (three fires lost at Chatham)."""
    quarter = parse_schedule("*/15 * * * *", ZoneInfo(zone))
    fires, moment = [], start
    for _ in range(24):
        fire = quarter.next_after(moment)
        assert fire is not None
        fires.append(moment := fire)
    assert {later - earlier for earlier, later in pairwise(fires)} == {timedelta(minutes=15)}


def test_cluster_connector_is_accepted() -> None:
    Scheduler(RedisClusterConnector(["127.0.0.1:7000"])).register("@daily", Task("t"))


async def test_a_resent_fire_whose_task_already_ran_still_counts_as_enqueued(
    connector: Connector, queue_name: str
) -> None:
    # A fire's reply is lost and its task runs and is deleted before the connector sends
    # the call again: the re-send finds the fire's lock taken. It took it itself, so the
    # fire counts as enqueued (and gets its history event), not as another scheduler's.
    keys = Broker(connector).keys(queue_name)
    script = load_script("enqueue")

    async def fire(task_id: str, when: int, resend: str, unique: str = "") -> int:
        script_keys = [keys.task(task_id), keys.pending, *([unique] if unique else [])]
        args: list[str | int] = [f"msg-{task_id}", task_id, time.time_ns(), keys.wakeup, 60,
                keys.fired("entry", when), 600, resend]  # fmt: skip
        return int(await connector.run_script(script, script_keys, args))

    assert await fire("a", 1000, "0") == 1
    await connector.execute("DEL", keys.task("a"))  # run and deleted
    assert await fire("a", 1000, "1") == 1  # the lost reply's own re-send
    assert await fire("b", 1000, "1") == -2  # another scheduler's call for that fire
    held = keys.unique("t", b"{}")
    await connector.execute("SET", held, "someone-else")
    assert await fire("c", 1060, "0", held) == -1  # refused as a duplicate
    assert await fire("c", 1060, "1", held) == -2  # so its re-send stored nothing either
