"""Invalid values are refused at the edges (issue 11): Event construction, publishing, a
handler's output, store keys, names; handler timeouts; SQLite write failures."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from setpiece import (
    Bus,
    ConfigError,
    Context,
    EngineError,
    Event,
    EventError,
    HandlerError,
    HandlerTimeout,
    RetryPolicy,
    RuntimeConfig,
    Service,
    Stack,
    Stream,
)
from setpiece.event import MAX_DEPTH, RESERVED_EXTENSIONS, decode_event
from setpiece.runtime.consumer import REPLAY_MARK, RULE_MARK, TARGET_MARK
from setpiece.runtime.outgoing import encode_checked, prepare

Run = Callable[[Any], Any]
FAST = RetryPolicy(max_attempts=2, initial_delay=0.001, max_delay=0.01)


def nested(levels: int) -> Any:
    value: Any = 1
    for _ in range(levels):
        value = [value]
    return value


# -- construction ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["subject", "tenant", "partitionkey", "source", "id",
                                  "correlationid", "domain"])
def test_attributes_of_the_wrong_type_are_refused_at_construction(name: str) -> None:
    with pytest.raises(EventError) as info:
        Event(type="t", **{name: 5})
    assert info.value.field == name and str(info.value).startswith(f"{name}:")


def test_extensions_must_be_a_dict_and_type_is_required() -> None:
    with pytest.raises(EventError) as info:
        Event(type="t", extensions=["x"])  # type: ignore[arg-type]
    assert info.value.field == "extensions"
    with pytest.raises(EventError) as info:
        Event(source="s")  # type: ignore[call-arg]
    assert info.value.field == "type"
    with pytest.raises(TypeError, match="typo"):
        Event(type="t", typo=1)  # type: ignore[call-arg]
    event = Event(type="t", source="s")
    with pytest.raises(EventError) as info:
        event.replace(tenant=5)
    assert info.value.field == "tenant"


@pytest.mark.parametrize("name", ["id", "tenant", "source", "type", "subject", "partitionkey"])
def test_nul_in_an_attribute_is_refused_naming_it(name: str) -> None:
    event = Event(type="t", source="s").replace(**{name: "a\x00b"})
    with pytest.raises(EventError) as info:
        prepare(event, cause=None, service=None)  # what publishing and handler output do
    assert info.value.field == name and "U+0000" in str(info.value)
    with pytest.raises(EventError) as info:
        Event.from_dict({"type": "t", "source": "s", name: "a\x00b"}).check_external()
    assert info.value.field == name


@pytest.mark.parametrize("bad", ["a\x00", "ab\n", "Upper"])
def test_extension_names_with_nul_or_a_newline_are_refused(bad: str) -> None:
    with pytest.raises(EventError) as info:
        Event(type="t", source="s", extensions={bad: 1}).validate()
    assert info.value.field == f"extensions.{bad}"


@pytest.mark.parametrize("value", ["2024-13-45T25:61:61Z", "2024-02-30T00:00:00Z",
                                   "2024-01-01T24:00:00Z", "2024-01-01T00:00:00+25:00",
                                   "2024-01-01T00:00:00Z\n"])
def test_impossible_times_are_refused(value: str) -> None:
    with pytest.raises(EventError) as info:
        Event(type="t", source="s", time=value).validate()
    assert info.value.field == "time"


def test_possible_times_still_pass() -> None:
    for value in ("2024-02-29T23:59:60Z", "2024-01-01T00:00:00.5+05:30", "2024-12-31t10:00:00z"):
        Event(type="t", source="s", time=value).validate()


def test_a_trailing_newline_in_a_traceparent_is_refused() -> None:
    tp = "00-" + "a" * 32 + "-" + "b" * 16 + "-01"
    Event(type="t", source="s", traceparent=tp).validate()
    with pytest.raises(EventError):
        Event(type="t", source="s", traceparent=tp + "\n").validate()


def test_parsing_refuses_data_nested_too_deep() -> None:
    for levels in (MAX_DEPTH + 1, 100_000):
        text = '{"type":"t","source":"s","data":' + "[" * levels + "]" * levels + "}"
        with pytest.raises(EventError) as info:
            Event.from_json(text)
        assert info.value.field == "data" and str(MAX_DEPTH) in str(info.value)


def test_the_runtime_marks_are_the_reserved_names() -> None:
    assert {TARGET_MARK, REPLAY_MARK, RULE_MARK} <= RESERVED_EXTENSIONS


# -- publishing -----------------------------------------------------------------------------


def sink_stack(seen: list[Event]) -> Stack:
    svc = Service("sink")

    @svc.on({"source": [{"prefix": ""}]})
    async def note(event: Event) -> None:
        seen.append(event)

    return Stack("edges", services=[svc])


@pytest.mark.parametrize(("data", "field"), [
    ({"a": float("nan")}, "data.a"),
    ([1, float("inf")], "data[1]"),
    ({"x": {"y": [float("-inf")]}}, "data.x.y[0]"),
    ({"s": "\ud800"}, "data"),  # a lone surrogate: no UTF-8 form
])
def test_nan_and_infinity_in_data_are_refused_naming_the_field(
    run: Run, data: Any, field: str
) -> None:
    async def main() -> None:
        async with sink_stack([]).start(engine="memory") as rt:
            with pytest.raises(EventError) as info:
                await rt.publish(Event(type="t", source="s", data=data))
            assert info.value.field == field and ("NaN" in str(info.value) or "surrogate" in str(
                info.value))
            assert sum(await rt.engine.end_offsets("bus.default")) == 0

    run(main())


def test_data_nested_deeper_than_the_limit_is_refused(run: Run) -> None:
    async def main() -> None:
        async with sink_stack([]).start(engine="memory") as rt:
            await rt.publish(Event(type="t", source="s", data=nested(MAX_DEPTH)))
            for levels in (MAX_DEPTH + 1, 5000):  # 5000: deeper than the encoder can go
                with pytest.raises(EventError) as info:
                    await rt.publish(Event(type="t", source="s", data=nested(levels)))
                assert info.value.field == "data" and str(MAX_DEPTH) in str(info.value)
            with pytest.raises(EventError) as info:
                await rt.publish(Event(type="t", source="s",
                                       extensions={"deep": nested(MAX_DEPTH + 1)}))
            assert info.value.field == "extensions.deep"
            await rt.drain(timeout=10)
            assert sum(await rt.engine.end_offsets("bus.default")) == 1

    run(main())


@pytest.mark.parametrize("mark", sorted(RESERVED_EXTENSIONS))
def test_reserved_extension_names_are_refused_when_publishing(run: Run, mark: str) -> None:
    async def main() -> None:
        async with sink_stack([]).start(engine="memory") as rt:
            with pytest.raises(EventError) as info:
                await rt.publish(Event(type="t", source="s", extensions={mark: "x"}))
            assert info.value.field == f"extensions.{mark}"
            assert sum(await rt.engine.end_offsets("bus.default")) == 0

    run(main())


def test_a_handler_returning_a_reserved_mark_is_dead_lettered(run: Run) -> None:
    svc = Service("sneaky")

    @svc.on({"type": ["in"]}, retry=FAST)
    async def hide(event: Event) -> Event:
        return Event(type="out", extensions={"sptarget": "nobody"})

    async def main() -> None:
        async with Stack("s", services=[svc]).start(engine="memory") as rt:
            await rt.publish(Event(type="in", source="s"))
            await rt.drain(timeout=10)
            [letter] = await rt.dead_letters()
            assert "sptarget" in letter.error and "reserved" in letter.error

    run(main())


def test_redrive_and_replay_still_set_their_marks_and_handlers_can_reemit(run: Run) -> None:
    seen: list[Event] = []
    fail = {"on": True}
    svc = Service("relay")

    @svc.on({"type": ["in"]}, retry=FAST)
    async def relay(event: Event) -> Event:
        if fail["on"]:
            raise RuntimeError("down")
        # a new event that copies the extensions: a replay mark, when replayed, is dropped
        return Event(type="out", extensions=event.extensions)

    sink = Service("sink")

    @sink.on({"type": ["out"]})
    async def note(event: Event) -> None:
        seen.append(event)

    async def main() -> None:
        async with Stack("s", services=[svc, sink]).start(engine="memory") as rt:
            started = time.time() - 1
            await rt.publish(Event(type="in", source="s"))
            await rt.drain(timeout=10)
            assert len(await rt.dead_letters()) == 1
            fail["on"] = False
            assert await rt.redrive() == 1
            await rt.drain(timeout=10)
            assert len(seen) == 1
            assert await rt.replay(start=started, rule="relay.relay", name="again") >= 1
            await rt.drain(timeout=10)
            assert await rt.dead_letters() == []
            assert len(seen) == 2 and not (seen[1].extensions or {}).keys() & RESERVED_EXTENSIONS

    run(main())


# -- store keys -----------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["a\x00b", "\ud800", 5])
def test_store_keys_an_engine_cannot_hold_are_refused(run: Run, key: Any) -> None:
    svc = Service("keys")
    errors: list[str] = []

    @svc.on({"type": ["k"]}, retry=FAST)
    async def write(event: Event, ctx: Context) -> None:
        for op in (lambda: ctx.store.put(key, 1), lambda: ctx.store.get(key),
                   lambda: ctx.store.delete(key)):
            try:
                await op()
            except ValueError as exc:
                errors.append(str(exc))

    async def main() -> None:
        async with Stack("s", services=[svc]).start(engine="memory") as rt:
            await rt.publish(Event(type="k", source="s"))
            await rt.drain(timeout=10)
            with pytest.raises(ValueError, match="store key"):
                await rt.store("keys").get(key)

    run(main())
    assert len(errors) == 3 and all(e.startswith("store key") for e in errors)


# -- names ----------------------------------------------------------------------------------


@pytest.mark.parametrize("make", [
    lambda: Service("x\n"), lambda: Bus("b\n"), lambda: Stream("s\n"),
    lambda: Stack("st\n", services=[]),
])
def test_names_with_a_trailing_newline_are_refused(make: Callable[[], Any]) -> None:
    with pytest.raises(ConfigError, match="name"):
        make()


# -- SQLite: a full disk --------------------------------------------------------------------


def test_a_full_database_surfaces_as_engine_error_naming_the_cause(
    run: Run, tmp_path: Path
) -> None:
    async def main() -> None:
        async with sink_stack([]).start(engine=f"sqlite:///{tmp_path / 'full.db'}") as rt:
            db: sqlite3.Connection = rt.engine._db  # type: ignore[attr-defined]
            pages = db.execute("PRAGMA page_count").fetchone()[0]
            db.execute(f"PRAGMA max_page_count = {pages + 2}")  # as good as a full disk
            with pytest.raises(EngineError, match="full"):
                for i in range(200):
                    await rt.publish(Event(type="t", source="s", data="x" * 50_000 + str(i)))
            db.execute("PRAGMA max_page_count = 1073741823")
            await rt.publish(Event(type="t", source="s"))  # the engine still works after

    run(main())


# -- handler timeouts -----------------------------------------------------------------------


def test_timeouts_are_checked_when_declared() -> None:
    svc = Service("t")
    for bad in (0, -1, "5", True):
        with pytest.raises(ConfigError, match="timeout"):
            svc.on({"type": ["x"]}, timeout=bad, name=f"h{len(svc.handlers)}")(  # type: ignore[arg-type]
                lambda event: None
            )
    with pytest.raises(ConfigError, match="handler_timeout"):
        RuntimeConfig(handler_timeout=0)
    assert issubclass(HandlerTimeout, HandlerError) and issubclass(HandlerTimeout, TimeoutError)


def stuck_stack(calls: list[int], *, sync: bool = False) -> Stack:
    svc = Service("slow")

    if sync:
        @svc.on({"type": ["go"]}, timeout=0.2, retry=FAST)
        def stuck_sync(event: Event) -> None:
            calls.append(1)
            time.sleep(0.6)
    else:
        @svc.on({"type": ["go"]}, timeout=0.2, retry=FAST)
        async def stuck(event: Event) -> None:
            calls.append(1)
            await asyncio.Event().wait()  # never returns

    @svc.on({"type": ["other"]})
    async def other(event: Event, ctx: Context) -> None:
        await ctx.store.put("other", True)

    return Stack("s", services=[svc])


@pytest.mark.parametrize("sync", [False, True], ids=["async", "thread"])
def test_a_handler_that_never_returns_times_out_retries_then_dead_letters(
    run: Run, sync: bool
) -> None:
    calls: list[int] = []

    async def main() -> None:
        async with stuck_stack(calls, sync=sync).start(engine="memory") as rt:
            await rt.publish(Event(type="go", source="s"))
            await rt.publish(Event(type="other", source="s"))
            await rt.drain(timeout=20)
            [letter] = await rt.dead_letters()
            assert letter.error.startswith("HandlerTimeout:") and letter.attempts == 2
            assert "0.2s" in letter.error and letter.handler.endswith("stuck" + "_sync" * sync)
            assert await rt.store("slow").get("other") is True

    run(main())
    assert len(calls) == 2


def test_the_config_default_applies_to_schedules(run: Run) -> None:
    svc = Service("tick")
    calls: list[int] = []

    @svc.every(0.05, retry=FAST)
    async def tick() -> None:
        calls.append(1)
        await asyncio.sleep(30)

    async def main() -> None:
        config = RuntimeConfig(handler_timeout=0.1)
        async with Stack("s", services=[svc]).start(engine="memory", config=config) as rt:
            for _ in range(400):
                if await rt.dead_letters():
                    break
                await asyncio.sleep(0.02)
            [letter, *_] = await rt.dead_letters()
            assert letter.error.startswith("HandlerTimeout:") and letter.handler == "tick.tick"

    run(main())


def test_an_async_handler_that_blocks_the_loop_is_named_in_a_warning(
    run: Run, caplog: pytest.LogCaptureFixture
) -> None:
    svc = Service("blocky")

    @svc.on({"type": ["go"]})
    async def innocent(event: Event) -> None:
        await asyncio.sleep(0.5)  # in flight while the other blocks, but not to blame

    @svc.on({"type": ["go"]})
    async def sleeper(event: Event) -> None:
        await asyncio.sleep(0.05)
        time.sleep(1.5)  # noqa: ASYNC251 - the mistake under test: it blocks the loop

    async def main() -> None:
        async with Stack("s", services=[svc]).start(engine="memory") as rt:
            await rt.publish(Event(type="go", source="s"))
            await rt.drain(timeout=20)

    with caplog.at_level(logging.WARNING, logger="setpiece.runtime"):
        run(main())
    warnings = [r.getMessage() for r in caplog.records if "blocked" in r.getMessage()]
    assert warnings and all(w.startswith("handler blocky.sleeper has blocked") for w in warnings)
    assert "test_edges.py" in warnings[0]  # where it is blocked


# -- property: what the edge accepts, the reader reads back -----------------------------------

any_text = st.text(st.characters(exclude_categories=()))  # any code point, surrogates too
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats() | any_text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(any_text, inner, max_size=3),
    max_leaves=20,
)
attribute = st.none() | any_text | st.integers() | st.sampled_from(["a\x00", "x\n", ""])


@settings(max_examples=300, deadline=None)
@given(
    attrs=st.fixed_dictionaries({}, optional={
        "id": attribute, "source": attribute, "subject": attribute, "tenant": attribute,
        "partitionkey": attribute, "time": attribute, "correlationid": attribute,
    }),
    data=json_values | st.builds(nested, st.integers(0, 300)),
    extensions=st.none() | st.dictionaries(any_text, json_values, max_size=3)
    | st.lists(st.text(), max_size=2),
)
def test_every_event_is_refused_at_the_edge_or_read_back_intact(
    attrs: dict[str, Any], data: Any, extensions: Any
) -> None:
    try:
        event = Event(type="t", data=data, extensions=extensions, **attrs)
        ready = prepare(event, cause=None, service="svc")
        encoded = encode_checked(ready, 10 * 1024 * 1024)
    except EventError:
        return  # refused at the edge, naming the field
    back = decode_event(encoded).validate()  # what a consumer's reader does
    assert back == ready
    assert "\x00" not in f"{back.id}{back.source}{back.tenant}{back.partitionkey}"


def test_a_task_handler_past_its_timeout_fails_the_task_with_states_timeout(run: Run) -> None:
    from setpiece import Workflow

    svc = Service("calc")

    @svc.task(timeout=0.2)
    async def slow(event: Event) -> None:
        await asyncio.Event().wait()  # never returns

    flow = Workflow("w", {"StartAt": "A", "States": {
        "A": {"Type": "Task", "Resource": "service:calc.slow", "End": True}}})

    async def main() -> None:
        async with Stack("s", services=[svc], workflows=[flow]).start(engine="memory") as rt:
            execution = await rt.start_execution("w", {})
            done = await rt.wait_execution(execution, timeout=20)
            assert done.status == "FAILED" and done.error == "States.Timeout"

    run(main())
