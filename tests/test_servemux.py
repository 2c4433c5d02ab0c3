"""ServeMux routes each task type to one handler, as asynq's ServeMux does, through middleware."""

from __future__ import annotations

import functools

import pytest

import asyncq
from asyncq import Handler, ServeMux, Task


def recorder(calls: list[str], name: str) -> Handler:
    """An async handler that appends ``name:type`` to ``calls``."""

    async def handle(task: Task) -> None:
        calls.append(f"{name}:{task.type}")

    return handle


def mux_with(calls: list[str], *patterns: str) -> ServeMux:
    mux = ServeMux()
    for pattern in patterns:
        mux.handle(pattern, recorder(calls, pattern))
    return mux


# -- matching ------------------------------------------------------------------------------------


async def test_exact_type_match_wins_over_a_prefix() -> None:
    calls: list[str] = []
    mux = mux_with(calls, "email", "email:send")
    await mux(Task("email:send"))
    assert calls == ["email:send:email:send"]
    assert mux.match("email:send") == "email:send"


async def test_exact_match_wins_even_over_a_longer_registered_prefix_of_another_type() -> None:
    mux = ServeMux()
    for pattern in ("email:send:bulk", "email:send"):
        mux.handle(pattern, recorder([], pattern))
    assert mux.match("email:send") == "email:send"
    assert mux.match("email:send:bulk:eu") == "email:send:bulk"


async def test_longest_registered_prefix_wins() -> None:
    calls: list[str] = []
    mux = mux_with(calls, "email", "email:send", "e")
    await mux(Task("email:send:welcome"))
    await mux(Task("email:open"))
    await mux(Task("export"))
    assert calls == [
        "email:send:email:send:welcome",
        "email:email:open",
        "e:export",
    ]


def test_prefix_is_a_plain_string_prefix_not_a_segment() -> None:
    mux = mux_with([], "email")
    assert mux.match("emailing") == "email"
    assert mux.match("email:send") == "email"
    assert mux.match("e-mail") is None
    assert mux.match("mail") is None


def test_equal_length_patterns_are_tried_in_registration_order() -> None:
    # Two different patterns of one length can never both be prefixes of one type (they
    # would be the same string, and duplicates are refused), so asynq's "first registered
    # wins among equal lengths" shows only in the lookup order: longest first, equal
    # lengths in registration order.
    first = mux_with([], "bb", "aa", "c")
    second = mux_with([], "aa", "bb", "c")
    assert first._by_length == ["bb", "aa", "c"]
    assert second._by_length == ["aa", "bb", "c"]


def test_equal_length_siblings_each_match_their_own_types() -> None:
    mux = mux_with([], "x", "abc", "abd", "ab")
    assert mux.match("abcz") == "abc"
    assert mux.match("abdz") == "abd"
    assert mux.match("abz") == "ab"
    assert mux.match("xyz") == "x"


def test_no_matching_pattern_gives_none() -> None:
    mux = mux_with([], "email", "image:resize")
    assert mux.match("webhook:sync") is None
    assert mux.match("image") is None


def test_patterns_lists_registrations_in_order() -> None:
    mux = mux_with([], "zeta", "alpha", "alpha:beta")
    assert mux.patterns == ["zeta", "alpha", "alpha:beta"]
    mux.patterns.append("mutating the copy changes nothing")
    assert mux.patterns == ["zeta", "alpha", "alpha:beta"]


def test_an_empty_mux_has_no_patterns_and_matches_nothing() -> None:
    mux = ServeMux()
    assert mux.patterns == []
    assert mux.match("anything") is None


# -- registration errors -------------------------------------------------------------------------


@pytest.mark.parametrize("pattern", ["", " ", "\t\n", None, 1, b"email"])
def test_blank_or_non_str_pattern_is_refused(pattern: object) -> None:
    mux = ServeMux()
    with pytest.raises(ValueError, match="non-blank str"):
        mux.handle(pattern, recorder([], "x"))  # type: ignore[arg-type]
    assert mux.patterns == []


def test_registering_the_same_pattern_twice_is_refused() -> None:
    calls: list[str] = []
    mux = mux_with(calls, "email")
    with pytest.raises(ValueError, match="already registered"):
        mux.handle("email", recorder(calls, "other"))
    assert mux.patterns == ["email"]


async def test_a_refused_duplicate_keeps_the_first_handler() -> None:
    calls: list[str] = []
    mux = mux_with(calls, "email")
    with pytest.raises(ValueError, match="already registered"):
        mux.handle("email", recorder(calls, "second"))
    await mux(Task("email"))
    assert calls == ["email:email"]


def test_a_plain_sync_function_is_refused_with_advice() -> None:
    def sync_handler(task: Task) -> None:
        pass

    mux = ServeMux()
    with pytest.raises(TypeError, match="async def") as caught:
        mux.handle("email", sync_handler)  # type: ignore[arg-type]
    assert "asyncio.to_thread" in str(caught.value)
    assert mux.patterns == []


def test_a_sync_lambda_is_refused() -> None:
    mux = ServeMux()
    with pytest.raises(TypeError, match="async def"):
        mux.handle("email", lambda task: None)  # type: ignore[arg-type,return-value]


async def test_an_object_with_an_async_call_is_accepted() -> None:
    class Resizer:
        def __init__(self) -> None:
            self.seen: list[str] = []

        async def __call__(self, task: Task) -> None:
            self.seen.append(task.type)

    resizer = Resizer()
    mux = ServeMux()
    mux.handle("image:resize", resizer)
    await mux(Task("image:resize"))
    assert resizer.seen == ["image:resize"]


async def test_a_partial_of_an_async_function_is_accepted() -> None:
    seen: list[tuple[str, str]] = []

    async def handle(task: Task, *, channel: str) -> None:
        seen.append((channel, task.type))

    mux = ServeMux()
    mux.handle("notify", functools.partial(handle, channel="sms"))
    await mux(Task("notify"))
    assert seen == [("sms", "notify")]


async def test_the_decorator_form_registers_and_returns_the_function_unchanged() -> None:
    seen: list[str] = []
    mux = ServeMux()

    async def handle(task: Task) -> None:
        seen.append(task.type)

    decorated = mux.handler("report:build")(handle)
    assert decorated is handle
    assert mux.patterns == ["report:build"]

    @mux.handler("report")
    async def other(task: Task) -> None:
        seen.append("other")

    assert other.__name__ == "other"
    await mux(Task("report:build"))
    await mux(Task("report:daily"))
    assert seen == ["report:build", "other"]


def test_the_decorator_form_refuses_a_sync_function() -> None:
    mux = ServeMux()
    with pytest.raises(TypeError, match="async def"):

        @mux.handler("x")  # type: ignore[arg-type]
        def sync_handler(task: Task) -> None:
            pass


def test_the_decorator_used_without_a_pattern_is_refused_at_once() -> None:
    """``@mux.handler`` with no parentheses registered nothing and replaced the function
    by the decorator's inner one: every task then failed as having no handler."""
    mux = ServeMux()
    with pytest.raises(TypeError, match=r'@mux.handler\("some:type"\) above email_send\(\)'):

        @mux.handler  # type: ignore[arg-type]
        async def email_send(task: Task) -> None:
            pass

    assert mux.patterns == []


@pytest.mark.parametrize("pattern", ["", "  ", 42])
def test_the_decorator_refuses_a_blank_or_non_str_pattern_before_it_decorates(
    pattern: object,
) -> None:
    with pytest.raises(ValueError, match="non-blank str"):
        ServeMux().handler(pattern)  # type: ignore[arg-type]


# -- not found -----------------------------------------------------------------------------------


async def test_an_unknown_type_raises_handler_not_found_naming_the_type() -> None:
    mux = mux_with([], "email")
    with pytest.raises(asyncq.HandlerNotFoundError, match="'image:resize'"):
        await mux(Task("image:resize"))


async def test_an_empty_mux_raises_handler_not_found() -> None:
    with pytest.raises(asyncq.HandlerNotFoundError, match="'anything'"):
        await ServeMux()(Task("anything"))


def test_handler_not_found_is_an_asyncq_error() -> None:
    assert issubclass(asyncq.HandlerNotFoundError, asyncq.AsyncqError)


# -- middleware ----------------------------------------------------------------------------------


def tracing(calls: list[str], name: str) -> asyncq.Middleware:
    """Middleware that records entering and leaving around the next handler."""

    def middleware(next_handler: Handler) -> Handler:
        async def wrapped(task: Task) -> None:
            calls.append(f"{name}>")
            try:
                await next_handler(task)
            finally:
                calls.append(f"<{name}")

        return wrapped

    return middleware


async def test_middleware_wraps_in_registration_order_first_added_outermost() -> None:
    calls: list[str] = []
    mux = mux_with(calls, "email")
    mux.use(tracing(calls, "outer"))
    mux.use(tracing(calls, "middle"), tracing(calls, "inner"))
    await mux(Task("email:send"))
    assert calls == [
        "outer>",
        "middle>",
        "inner>",
        "email:email:send",
        "<inner",
        "<middle",
        "<outer",
    ]


async def test_middleware_wraps_every_handler() -> None:
    calls: list[str] = []
    mux = mux_with(calls, "email", "image")
    mux.use(tracing(calls, "mw"))
    await mux(Task("email"))
    await mux(Task("image:resize"))
    assert calls == ["mw>", "email:email", "<mw", "mw>", "image:image:resize", "<mw"]


async def test_middleware_wraps_the_not_found_handler_too() -> None:
    calls: list[str] = []
    mux = mux_with(calls, "email")
    mux.use(tracing(calls, "mw"))
    with pytest.raises(asyncq.HandlerNotFoundError):
        await mux(Task("unknown"))
    assert calls == ["mw>", "<mw"]


async def test_middleware_sees_the_handler_error() -> None:
    errors: list[BaseException] = []

    def catcher(next_handler: Handler) -> Handler:
        async def wrapped(task: Task) -> None:
            try:
                await next_handler(task)
            except Exception as error:
                errors.append(error)
                raise

        return wrapped

    mux = ServeMux()

    @mux.handler("fails")
    async def fails(task: Task) -> None:
        raise asyncq.SkipRetry("bad payload")

    mux.use(catcher)
    with pytest.raises(asyncq.SkipRetry, match="bad payload"):
        await mux(Task("fails"))
    assert len(errors) == 1 and isinstance(errors[0], asyncq.SkipRetry)


async def test_middleware_can_short_circuit_the_handler() -> None:
    calls: list[str] = []

    def drop_all(next_handler: Handler) -> Handler:
        async def wrapped(task: Task) -> None:
            calls.append("dropped")

        return wrapped

    mux = mux_with(calls, "email")
    mux.use(drop_all)
    await mux(Task("email"))
    await mux(Task("nothing-registered"))  # not-found is wrapped, so it is skipped too
    assert calls == ["dropped", "dropped"]


async def test_middleware_added_after_resolve_still_takes_effect() -> None:
    calls: list[str] = []
    mux = mux_with(calls, "email")
    before = mux.resolve("email")
    await mux(Task("email"))
    with pytest.raises(asyncq.HandlerNotFoundError):
        await mux(Task("unknown"))  # caches the not-found chain as well
    assert calls == ["email:email"]

    mux.use(tracing(calls, "late"))
    assert mux.resolve("email") is not before
    calls.clear()
    await mux(Task("email"))
    with pytest.raises(asyncq.HandlerNotFoundError):
        await mux(Task("unknown"))
    assert calls == ["late>", "email:email", "<late", "late>", "<late"]


async def test_a_handler_registered_after_resolve_is_found() -> None:
    calls: list[str] = []
    mux = mux_with(calls, "email")
    mux.resolve("email:send")
    mux.handle("email:send", recorder(calls, "exact"))
    await mux(Task("email:send"))
    assert calls == ["exact:email:send"]


def test_resolve_builds_each_chain_once_and_caches_it() -> None:
    built: list[str] = []

    def counting(next_handler: Handler) -> Handler:
        built.append("built")
        return next_handler

    mux = mux_with([], "email")
    mux.use(counting)
    first = mux.resolve("email:a")
    assert mux.resolve("email:b") is first  # same pattern, same chain
    assert built == ["built"]
    mux.resolve("other")  # the not-found chain is built separately
    assert built == ["built", "built"]


def test_use_refuses_a_non_callable_middleware() -> None:
    mux = ServeMux()
    with pytest.raises(TypeError, match="middleware must be callable"):
        mux.use("not callable")  # type: ignore[arg-type]


# -- a mux is a handler --------------------------------------------------------------------------


async def test_a_servemux_is_itself_awaitable_as_a_handler() -> None:
    calls: list[str] = []
    inner = mux_with(calls, "image:resize")
    outer = ServeMux()
    outer.handle("image", inner)
    await outer(Task("image:resize:thumb"))
    assert calls == ["image:resize:image:resize:thumb"]
    with pytest.raises(asyncq.HandlerNotFoundError, match="'image:crop'"):
        await outer(Task("image:crop"))


async def test_the_handler_receives_the_task_object_itself() -> None:
    received: list[Task] = []
    mux = ServeMux()

    @mux.handler("email")
    async def handle(task: Task) -> None:
        received.append(task)

    task = Task("email", {"to": 1}, headers={"trace": "abc"})
    await mux(task)
    assert received == [task] and received[0] is task
    assert received[0].json() == {"to": 1} and received[0].headers == {"trace": "abc"}


def test_the_per_type_cache_stays_bounded_and_right() -> None:
    from asyncq.servemux import MAX_CACHED_TYPES

    mux = mux_with([], "email", "sms")
    email = mux.resolve("email")
    for i in range(MAX_CACHED_TYPES * 2):  # a prefix pattern allows any number of types
        assert mux.resolve(f"email:{i}") is email
    assert len(mux._by_type) <= MAX_CACHED_TYPES
    assert mux.resolve("sms:1") is mux.resolve("sms")
