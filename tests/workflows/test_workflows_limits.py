"""Limits of one execution: history events, expression time and sizes, retry arithmetic, a
step that crashes, fair sharing of the event loop, and the tenant of an execution's tasks."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from typing import Any

import pytest

from setpiece import Bus, ConfigError, Context, Event, Service, Stack, Workflow
from setpiece.workflows import WorkflowLimits, _retry, execute
from setpiece.workflows import _steps as steps_module
from tests.workflows.helpers import machine

Run = Callable[[Any], Any]

LOOP = {
    "StartAt": "A",
    "States": {"A": {"Type": "Pass", "Next": "B"}, "B": {"Type": "Pass", "Next": "A"}},
}


# --------------------------------------------------------------------------- history events


def test_a_loop_fails_at_the_history_limit_in_process() -> None:
    ex = execute(LOOP, {}, limits=WorkflowLimits(max_history_events=100))
    assert (ex.status, ex.error) == ("FAILED", "States.Runtime")
    assert "limit of 100 history events" in (ex.cause or "")
    assert len(ex.history) == 100
    assert ex.history[-1].type == "ExecutionFailed"


def test_the_default_history_limit_is_step_functions_25000() -> None:
    ex = execute(LOOP, {})
    assert (ex.status, ex.error) == ("FAILED", "States.Runtime")
    assert len(ex.history) == 25_000


def test_a_retry_loop_is_bounded_by_the_history_limit_and_cannot_be_caught() -> None:
    definition = machine(("T", {
        "Type": "Task", "Resource": "service:s.t",
        "Retry": [{"ErrorEquals": ["States.ALL"], "MaxAttempts": 99999999,
                   "IntervalSeconds": 1, "BackoffRate": 2.0}],
        "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "Caught"}]}),
        ("Caught", {"Type": "Succeed"}))

    def tasks(state: str, payload: Any) -> Any:
        raise RuntimeError("down")

    ex = execute(definition, {}, tasks=tasks, limits=WorkflowLimits(max_history_events=500))
    assert (ex.status, ex.error) == ("FAILED", "States.Runtime")
    assert len(ex.history) <= 500


def test_limits_are_checked_when_built() -> None:
    with pytest.raises(ConfigError, match="max_history_events"):
        WorkflowLimits(max_history_events=0)
    with pytest.raises(ConfigError, match="expression_seconds"):
        WorkflowLimits(expression_seconds=float("nan"))
    with pytest.raises(ConfigError, match="time_slice"):
        WorkflowLimits(time_slice=-1)
    with pytest.raises(ConfigError, match="limits must be a WorkflowLimits"):
        Workflow("w", LOOP, limits={"max_history_events": 5})  # type: ignore[arg-type]


# ------------------------------------------------------------------------------ retry maths


@pytest.mark.parametrize("max_delay", [None, 10])
def test_huge_max_attempts_never_overflow_the_backoff(max_delay: int | None) -> None:
    retrier: dict[str, Any] = {"ErrorEquals": ["States.ALL"], "MaxAttempts": 99999999,
                               "IntervalSeconds": 99999999, "BackoffRate": 99.0}
    if max_delay is not None:
        retrier["MaxDelaySeconds"] = max_delay
    definition = machine(("T", {"Type": "Task", "Resource": "service:s.t", "Retry": [retrier]}))

    def tasks(state: str, payload: Any) -> Any:
        raise RuntimeError("down")

    ex = execute(definition, {}, tasks=tasks, limits=WorkflowLimits(max_history_events=5000))
    assert ex.status == "FAILED" and ex.error == "States.Runtime"


def test_retry_delay_is_capped_for_any_attempt_number() -> None:
    delay = _retry.retry_delay
    assert delay(1.0, 2.0, 3, None) == 8.0
    assert delay(1.0, 2.0, 10**9, None) == 31_622_401.0
    assert delay(1.0, 2.0, 10**9, 60.0) == 60.0
    assert delay(3.0, 1.0, 10**9, None) == 3.0


# ------------------------------------------------------------------ expressions and intrinsics


def jsonata_output(expr: str, limits: WorkflowLimits | None = None) -> Any:
    definition = {"QueryLanguage": "JSONata", "StartAt": "S",
                  "States": {"S": {"Type": "Pass", "Output": "{% " + expr + " %}", "End": True}}}
    return execute(definition, {}, limits=limits)


@pytest.mark.parametrize("expr", [
    "$sum([1..10000000])",
    '$pad("x", 1000000000)',
    '$join([1..6000].("abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyz"))',
    '($f := function($s, $n){ $n = 0 ? $s : $f($s & $s, $n - 1)}; $f("x", 60))',
    '$replace($pad("", 2000, "a"), "a", $pad("", 2000, "b"))',
    "$distinct([1..9000].({\"a\": $}))",
    '$string([1..2000].($pad("", 200, "z")))',
])
def test_jsonata_sizes_are_bounded_before_the_value_is_built(expr: str) -> None:
    ex = jsonata_output(expr)
    assert (ex.status, ex.error) == ("FAILED", "States.QueryEvaluationError"), ex.cause
    assert "limit" in (ex.cause or "") or "too slow" in (ex.cause or "")


def test_jsonata_time_is_bounded() -> None:
    # every path step is a step of the evaluator, so the clock is read all along
    expr = "[1..200000].[1..200000].($ + 1)"
    ex = jsonata_output(expr, WorkflowLimits(expression_seconds=0.01))
    assert (ex.status, ex.error) == ("FAILED", "States.QueryEvaluationError")
    assert "WorkflowLimits.expression_seconds" in (ex.cause or "")


def test_jsonata_within_limits_still_works() -> None:
    assert jsonata_output("$sum([1..1000])").output == 500500
    assert jsonata_output('$pad("ab", 5, "-")').output == "ab---"
    assert jsonata_output('$replace("aaa", "a", "bc")').output == "bcbcbc"
    assert jsonata_output("$count($distinct([1, 2, 2, 3]))").output == 3
    assert jsonata_output("$count($distinct([1..100000]))").output == 100000  # linear
    assert jsonata_output('$join(["a", "b"], "-")').output == "a-b"


@pytest.mark.parametrize("call", [
    "States.ArrayRange(1, 1000000000000, 1)",
    "States.ArrayRange(0, 1e300, 1)",
    "States.JsonToString(States.Array($.s, $.s, $.s, $.s, $.s, $.s, $.s, $.s))",
    "States.Format('{}{}{}{}{}{}{}{}', $.s, $.s, $.s, $.s, $.s, $.s, $.s, $.s)",
])
def test_intrinsics_check_sizes_before_building(call: str) -> None:
    definition = machine(("S", {"Type": "Pass", "Parameters": {"v.$": call}}))
    ex = execute(definition, {"s": "x" * 40_000}, limits=WorkflowLimits(max_value_size=100_000))
    assert (ex.status, ex.error) == ("FAILED", "States.IntrinsicFailure"), ex.cause


def test_intrinsic_range_within_the_limit() -> None:
    definition = machine(("S", {"Type": "Pass",
                                "Parameters": {"v.$": "States.ArrayRange(10, 1, -3)"}}))
    assert execute(definition, {}).output == {"v": [10, 7, 4, 1]}


def test_an_unexpected_exception_in_a_step_fails_the_execution(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = steps_module._ENTER["Pass"]

    def explode(step: Any) -> Any:
        if step.state.name == "B":
            raise MemoryError("simulated")
        return real(step)

    monkeypatch.setitem(steps_module._ENTER, "Pass", explode)
    monkeypatch.setattr(steps_module, "_unexpected", _reraise)
    ex = execute(machine(("A", {"Type": "Pass"}), ("B", {"Type": "Pass"})), {})
    assert (ex.status, ex.error) == ("FAILED", "States.Runtime")
    assert "MemoryError: simulated" in (ex.cause or "")
    assert ex.history[-1].type == "ExecutionFailed"


def _reraise(step: Any, e: Exception) -> Any:
    raise e


# ------------------------------------------------------------------------------ durable


def test_a_durable_loop_fails_at_the_history_limit(run: Run) -> None:
    wf = Workflow("loop", LOOP, limits=WorkflowLimits(max_history_events=300, step_budget=0.01))
    stack = Stack("s", workflows=[wf])

    async def main() -> None:
        async with stack.start(engine="memory") as rt:
            done = await rt.wait_execution(await rt.start_execution("loop", {}), 30)
            assert (done.status, done.error) == ("FAILED", "States.Runtime")
            assert "limit of 300 history events" in (done.cause or "")
            history = await rt.execution_history(done.id)
            assert len(history) == 300 and history[-1].type == "ExecutionFailed"

    run(main())


def test_a_durable_hot_loop_shares_the_event_loop(
    run: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another coroutine runs between every two states of a hot loop (time_slice=0)."""
    ticks = 0
    seen: list[int] = []
    real = steps_module.enter

    def enter(step: Any) -> Any:
        seen.append(ticks)
        return real(step)

    monkeypatch.setattr(steps_module, "enter", enter)
    wf = Workflow("loop", LOOP, limits=WorkflowLimits(max_history_events=2000, time_slice=0))
    stack = Stack("s", workflows=[wf])

    async def heartbeat() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    async def main() -> None:
        async with stack.start(engine="memory") as rt:
            beat = asyncio.create_task(heartbeat())
            try:
                done = await rt.wait_execution(await rt.start_execution("loop", {}), 30)
            finally:
                beat.cancel()
            assert done.status == "FAILED"

    run(main())
    assert len(seen) > 900
    # the heartbeat ran between any two consecutive state entries
    assert all(b > a for a, b in itertools.pairwise(seen))


def test_a_durable_step_that_crashes_fails_the_execution(run: Run) -> None:
    definition = machine(("Big", {"Type": "Pass",
                                  "Parameters": {"v.$": "States.ArrayRange(1, 1e12, 1)"}}))
    crash = machine(("A", {"Type": "Pass"}))
    stack = Stack("s", workflows=[Workflow("range", definition), Workflow("crash", crash)])

    async def main() -> None:
        async with stack.start(engine="memory") as rt:
            done = await rt.wait_execution(await rt.start_execution("range", {}), 30)
            assert (done.status, done.error) == ("FAILED", "States.IntrinsicFailure")
            assert "more than 1000 items" in (done.cause or "")

    run(main())


def test_any_unexpected_exception_in_a_durable_step_fails_the_execution(
    run: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = steps_module.enter

    def enter(step: Any) -> Any:
        if step.state.name == "B":
            raise MemoryError("simulated")
        return real(step)

    monkeypatch.setattr(steps_module, "enter", enter)
    stack = Stack("s", workflows=[Workflow("w", machine(("A", {"Type": "Pass"}),
                                                         ("B", {"Type": "Pass"})))])

    async def main() -> None:
        async with stack.start(engine="memory") as rt:
            done = await rt.wait_execution(await rt.start_execution("w", {}), 30)
            assert (done.status, done.error) == ("FAILED", "States.Runtime")
            assert "MemoryError: simulated" in (done.cause or "")
            history = await rt.execution_history(done.id)
            assert history[-1].type == "ExecutionFailed"
            assert "PassStateEntered" not in [e.type for e in history]  # the delivery is dropped

    run(main())


# ------------------------------------------------------------------------------ tenants


def test_tasks_of_an_execution_started_by_a_tenant_event_use_the_tenant_store(run: Run) -> None:
    billing = Service("billing")

    @billing.task()
    async def charge(event: Event, ctx: Context) -> Any:
        await ctx.store.put("charged", event.data)
        return {"tenant": event.tenant}

    @billing.on({"type": ["order_placed"]})
    async def on_order(event: Event, ctx: Context) -> None:
        await ctx.store.put("seen", event.data)

    wf = Workflow("pay", machine(("Charge", {"Type": "Task", "Resource": "service:billing.charge",
                                             "Parameters": {"n.$": "$.data.n"}})))
    bus = Bus("default")
    bus.rule("start-pay", {"type": ["order_placed"]}, wf)
    stack = Stack("s", services=[billing], buses=[bus], workflows=[wf])

    async def main() -> None:
        async with stack.start(engine="memory") as rt:
            event = await rt.publish(Event(type="order_placed", source="shop", data={"n": 3},
                                           tenant="acme"))
            await rt.drain(10)
            done = await rt.wait_execution(f"pay:{event.id}", 10)
            assert done.status == "SUCCEEDED", done
            assert done.output == {"tenant": "acme"}
            acme = rt.store("billing", tenant="acme")
            assert await acme.get("seen") == {"n": 3}  # the event handler
            assert await acme.get("charged") == {"n": 3}  # the workflow task: the same store
            shared = rt.store("billing")
            assert await shared.get("charged") is None and await shared.get("seen") is None

            ex = await rt.start_execution("pay", {"data": {"n": 5}}, tenant="globex")
            assert (await rt.wait_execution(ex, 10)).status == "SUCCEEDED"
            assert await rt.store("billing", tenant="globex").get("charged") == {"n": 5}

    run(main())
