"""Deadlines: far deadlines cost no timer until a sweep finds them near, and still hold."""

from __future__ import annotations

import asyncio
import time

from asyncq import Client, Connector, ServeMux, Task
from asyncq._broker.keys import QueueKeys
from asyncq._proto.asynq_pb2 import TaskMessage
from asyncq._worker.deadlines import Deadlines
from asyncq._worker.jobs import Job, JobBook, StopReason
from asyncq.testing import eventually
from tests.worker_helpers import running_server, state_is, task_message


def _job(task_id: str) -> Job:
    msg = TaskMessage(type="t", id=task_id, queue="q")
    return Job(
        id=task_id,
        keys=QueueKeys("q"),
        msg=msg,
        task=Task("t"),
        started=time.time(),
        deadline=time.time() + 60,
        lease_expiry=time.time() + 60,
    )


async def _handler_that_never_ends() -> None:
    await asyncio.Event().wait()


async def _start(jobs: JobBook, deadlines: Deadlines, job: Job, remaining: float) -> None:
    job.runner = asyncio.ensure_future(_handler_that_never_ends())  # stands in for a handler
    jobs.add(job)
    deadlines.watch(job, remaining)


async def test_a_near_deadline_gets_its_timer_at_once() -> None:
    jobs = JobBook()
    deadlines = Deadlines(jobs, period=10.0)
    job = _job("near")
    await _start(jobs, deadlines, job, 0.05)
    assert job.timer is not None and not deadlines.sweeping
    await eventually(lambda: job.runner is not None and job.runner.done(), within=2)
    assert job.stop_reason is StopReason.DEADLINE


async def test_a_far_deadline_is_armed_by_the_sweep_and_still_holds() -> None:
    jobs = JobBook()
    deadlines = Deadlines(jobs, period=0.1)
    job = _job("far")
    started = asyncio.get_running_loop().time()
    await _start(jobs, deadlines, job, 0.35)
    assert job.timer is None and deadlines.sweeping  # no timer of its own yet
    await eventually(lambda: job.runner is not None and job.runner.done(), within=3)
    assert job.stop_reason is StopReason.DEADLINE
    assert asyncio.get_running_loop().time() - started >= 0.35  # not a moment early
    jobs.remove(job)
    await eventually(lambda: not deadlines.sweeping, what="the sweeps to stop")


async def test_a_released_job_is_never_stopped() -> None:
    jobs = JobBook()
    deadlines = Deadlines(jobs, period=0.05)
    near, far = _job("near"), _job("far")
    await _start(jobs, deadlines, near, 0.05)
    await _start(jobs, deadlines, far, 0.12)
    for job in (near, far):
        job.in_handler = False  # the handler has returned
        Deadlines.release(job)
    # Past both deadlines and a few sweeps: the sweeps end once no running job is left.
    await eventually(lambda: not deadlines.sweeping, within=3, what="the sweeps to stop")
    probe = asyncio.get_running_loop().time() + 0.2
    await eventually(lambda: asyncio.get_running_loop().time() >= probe, within=3)
    assert near.stop_reason is None and far.stop_reason is None
    assert near.timer is None and far.timer is None
    for job in (near, far):
        assert job.runner is not None
        job.runner.cancel()


async def test_a_timeout_longer_than_the_sweep_period_cancels_the_handler(
    connector: Connector, queue_name: str
) -> None:
    """A two-second timeout outlives the first sweep: the sweep arms it, on time."""
    started: list[float] = []
    ended: list[float] = []
    mux = ServeMux()

    @mux.handler("slow")
    async def slow(task: Task) -> None:
        started.append(time.monotonic())
        try:
            await asyncio.Event().wait()
        finally:
            ended.append(time.monotonic())

    async with Client(connector) as client:
        info = await client.enqueue(Task("slow"), queue=queue_name, timeout=2)
    async with running_server(connector, mux, {queue_name: 1}):
        await eventually(lambda: state_is(connector, queue_name, info.id, "retry"), within=10)
    msg = await task_message(connector, queue_name, info.id)
    assert msg.error_msg.startswith("TaskDeadlineExceededError") and msg.retried == 1
    # About two seconds (a deadline with both timeout and deadline set is whole seconds).
    assert 1.0 <= ended[0] - started[0] < 3.0


async def test_a_handler_that_swallows_the_deadline_still_fails(
    connector: Connector, queue_name: str
) -> None:
    mux = ServeMux()

    @mux.handler("stubborn")
    async def stubborn(task: Task) -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            return  # swallowed: the task must still count as timed out

    async with Client(connector) as client:
        info = await client.enqueue(Task("stubborn"), queue=queue_name, timeout=1)
    async with running_server(connector, mux, {queue_name: 1}):
        await eventually(lambda: state_is(connector, queue_name, info.id, "retry"), within=10)
    msg = await task_message(connector, queue_name, info.id)
    assert msg.error_msg.startswith("TaskDeadlineExceededError") and msg.retried == 1
