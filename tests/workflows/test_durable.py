"""Durable workflows on the embedded engine: tasks, timers, tokens, branches, listing."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from setpiece import (
    Bus,
    ConfigError,
    Context,
    DefinitionError,
    Event,
    ExecutionAlreadyExists,
    ExecutionDoesNotExist,
    InvalidToken,
    Rule,
    Service,
    Stack,
    TaskDoesNotExist,
    TaskFailed,
    TaskTimedOut,
    Workflow,
    WorkflowTarget,
)
from setpiece.engine.contract import UnitOfWork
from setpiece.testing import FakeHttp, StackStarter
from setpiece.workflows import execute
from setpiece.workflows._store import NS
from tests.conftest import ENGINES, on_setpiece_engines
from tests.workflows.helpers import machine

Run = Callable[[Any], Any]
Urls = tuple[str, str | None]
#: Durable executions on SQLite and (marked ``servers``) on NATS JetStream + PostgreSQL.
on_every_engine = pytest.mark.parametrize("engine_urls", ENGINES, indirect=True)


def chain(n: int) -> dict[str, Any]:
    return machine(*((f"S{i}", {"Type": "Pass"}) for i in range(n)))


# ------------------------------------------------------------------------------ declaration


def test_workflow_is_validated_at_declaration_naming_state_and_field() -> None:
    with pytest.raises(DefinitionError, match=r"States\.A: Resource is required"):
        Workflow("w", machine(("A", {"Type": "Task"})))
    with pytest.raises(DefinitionError, match=r"States\.M\.ItemProcessor\.States\.T\.Resource: "
                                              r"unknown resource 'lambda:x'"):
        Workflow("w", machine(("M", {"Type": "Map", "ItemProcessor": machine(
            ("T", {"Type": "Task", "Resource": "lambda:x"}))})))
    with pytest.raises(ConfigError, match="workflow name"):
        Workflow("no spaces", chain(1))


def test_stack_checks_service_resources_and_workflow_targets() -> None:
    svc = Service("loyalty")

    @svc.task()
    async def award(event: Event) -> Any:
        return 1

    wf = Workflow("w", machine(("A", {"Type": "Task", "Resource": "service:loyalty.nope"})))
    with pytest.raises(ConfigError, match=r"States\.A\.Resource: service 'loyalty' has no "
                                          r"handler 'nope'"):
        Stack("s", services=[svc], workflows=[wf])
    wf = Workflow("w", machine(("A", {"Type": "Task", "Resource": "service:shop.award"})))
    with pytest.raises(ConfigError, match="the stack has no service 'shop'"):
        Stack("s", services=[svc], workflows=[wf])
    bus = Bus("default", rules=[Rule("r", {"type": ["x"]}, (WorkflowTarget("missing"),))])
    with pytest.raises(ConfigError, match="target workflow 'missing'"):
        Stack("s", buses=[bus])
    same = Workflow("w", chain(1))
    with pytest.raises(ConfigError, match="two of workflow 'w'"):
        Stack("s", workflows=[same, same])


def test_version_defaults_to_a_content_hash() -> None:
    assert Workflow("w", chain(2)).version == Workflow("w", chain(2)).version
    assert Workflow("w", chain(2)).version != Workflow("w", chain(3)).version
    assert Workflow("w", chain(2), version="v7").version == "v7"


# ------------------------------------------------------------------------------ running


@on_every_engine
def test_pass_chain_matches_the_in_process_interpreter(run: Run, engine_urls: Urls) -> None:
    definition = machine(
        ("A", {"Type": "Pass", "Parameters": {"x.$": "$.v", "id.$": "$$.Execution.Name"}}),
        ("B", {"Type": "Pass", "Assign": {"seen.$": "$.x"}}),
        ("C", {"Type": "Pass", "Parameters": {"seen.$": "$seen", "id.$": "$.id"}}),
    )
    stack = Stack("s", workflows=[Workflow("w", definition)])

    async def main() -> None:
        async with stack.start(engine_urls[0], store=engine_urls[1]) as rt:
            ex_id = await rt.start_execution("w", {"v": 5}, name="first")
            assert ex_id == "w:first"
            done = await rt.wait_execution(ex_id, 10)
            assert done.status == "SUCCEEDED" and done.succeeded
            assert done.output == {"seen": 5, "id": "first"}
            history = await rt.execution_history(ex_id)
            ref = execute(definition, {"v": 5}, name="first")
            assert ref.output == done.output
            assert [e.type for e in history] == [e.type for e in ref.history]
            assert [e.id for e in history] == list(range(1, len(history) + 1))
            assert history[1].details == {"name": "A", "input": {"v": 5}}
            assert done.stop_date is not None and done.stop_date >= done.start_date

    run(main())


def loyalty_service(calls: list[Any]) -> Service:
    svc = Service("loyalty")

    @svc.task()
    async def award(event: Event, ctx: Context) -> Any:
        calls.append(event.data)
        total = await ctx.store.get(event.data["customer"], 0) + event.data["points"]
        await ctx.store.put(event.data["customer"], total)
        await ctx.publish(Event(type="points_awarded", data={"total": total}))
        return {"total": total}

    @svc.task()
    async def reply(event: Event) -> Event:
        return Event(type="ignored", data={"echo": event.data})

    @svc.task()
    def sync_fn(event: Event, ctx: Any) -> Any:  # plain def: runs in a thread
        ctx.store.put("sync", event.data)
        return [event.data, "sync"]

    @svc.task()
    async def broken(event: Event, ctx: Context) -> Any:
        await ctx.store.put("broken", True)  # must not survive the failure
        await ctx.publish(Event(type="never"))
        if event.data.get("custom"):
            raise TaskFailed("Loyalty.Closed", "the program is closed")
        raise RuntimeError("database down")

    return svc


@on_every_engine
def test_service_tasks_commit_their_effects_with_the_step(run: Run, engine_urls: Urls) -> None:
    calls: list[Any] = []
    definition = machine(
        ("Award", {"Type": "Task", "Resource": "service:loyalty.award", "ResultPath": "$.award"}),
        ("Reply", {"Type": "Task", "Resource": "service:loyalty.reply", "ResultPath": "$.reply"}),
        ("Sync", {"Type": "Task", "Resource": "service:loyalty.sync_fn", "ResultPath": "$.sync"}),
    )
    audit: list[Event] = []
    watcher = Service("audit")

    @watcher.on({"type": ["points_awarded"]})
    async def seen(event: Event) -> None:
        audit.append(event)

    stack = Stack("s", services=[loyalty_service(calls), watcher],
                  workflows=[Workflow("w", definition)])

    async def main() -> None:
        async with stack.start(engine_urls[0], store=engine_urls[1]) as rt:
            ex_id = await rt.start_execution("w", {"customer": "c1", "points": 7})
            done = await rt.wait_execution(ex_id, 10)
            assert done.status == "SUCCEEDED", done
            assert done.output["award"] == {"total": 7}
            assert done.output["reply"] == {"echo": {"customer": "c1", "points": 7,
                                                     "award": {"total": 7}}}
            assert done.output["sync"][1] == "sync"
            assert await rt.store("loyalty").get("c1") == 7
            assert (await rt.store("loyalty").get("sync"))["points"] == 7
            await rt.drain(10)
            assert len(audit) == 1 and audit[0].correlationid == ex_id
            assert audit[0].source == "loyalty"

    run(main())
    assert len(calls) == 1


@on_every_engine
def test_failing_service_task_leaves_no_effects_and_is_caught(
    run: Run, engine_urls: Urls
) -> None:
    definition = machine(
        ("Custom", {"Type": "Task", "Resource": "service:loyalty.broken",
                    "Parameters": {"custom": True}, "ResultPath": "$.custom",
                    "Catch": [{"ErrorEquals": ["Loyalty.Closed"], "ResultPath": "$.custom",
                               "Next": "Plain"}]}),
        ("Plain", {"Type": "Task", "Resource": "service:loyalty.broken",
                   "Parameters": {}, "End": True}),
    )
    stack = Stack("s", services=[loyalty_service([])], workflows=[Workflow("w", definition)])

    async def main() -> None:
        async with stack.start(engine_urls[0], store=engine_urls[1]) as rt:
            done = await rt.wait_execution(await rt.start_execution("w", {}), 10)
            assert (done.status, done.error, done.cause) == (
                "FAILED", "States.TaskFailed", "database down")
            assert await rt.store("loyalty").get("broken") is None
            types = [e.type for e in await rt.execution_history(done.id)]
            assert types.count("TaskFailed") == 2 and types[-1] == "ExecutionFailed"
            await rt.drain(10)
            ends = await rt.engine.end_offsets("bus.default")
            assert sum(ends) == 0  # the failed attempts published nothing

    run(main())


@on_every_engine
def test_wait_state_is_a_durable_timer(run: Run, engine_urls: Urls) -> None:
    definition = machine(("Hold", {"Type": "Wait", "Seconds": 1}), ("Done", {"Type": "Pass"}))
    stack = Stack("s", workflows=[Workflow("w", definition)])

    async def main() -> None:
        async with stack.start(engine_urls[0], store=engine_urls[1]) as rt:
            started = time.monotonic()
            ex_id = await rt.start_execution("w", {"a": 1})
            await rt.drain(10)
            waiting = await rt.describe_execution(ex_id)
            assert waiting.status == "RUNNING"
            assert waiting.waiting[0].startswith("Hold: timer, since ")
            timers = await rt.engine.timers(NS)
            assert [t.id for t in timers] == [f"{ex_id}/0/wait"]
            done = await rt.wait_execution(ex_id, 10)
            assert done.output == {"a": 1}
            assert time.monotonic() - started >= 0.9
            assert await rt.engine.timers(NS) == []

    run(main())


@on_every_engine
def test_retry_interval_is_a_durable_timer_and_counts_attempts(
    run: Run, engine_urls: Urls
) -> None:
    svc = Service("flaky")
    attempts: list[int] = []

    @svc.task()
    async def once(event: Event, ctx: Context) -> Any:
        attempts.append(ctx.attempt)
        if ctx.attempt == 1:
            raise TaskFailed("Flaky.Busy", "try later")
        return {"retries": event.data}

    definition = machine(("T", {"Type": "Task", "Resource": "service:flaky.once",
                                "Parameters": {"n.$": "$$.State.RetryCount"},
                                "Retry": [{"ErrorEquals": ["Flaky.Busy"], "IntervalSeconds": 1}]}))
    stack = Stack("s", services=[svc], workflows=[Workflow("w", definition)])

    async def main() -> None:
        async with stack.start(engine_urls[0], store=engine_urls[1]) as rt:
            ex_id = await rt.start_execution("w", {})
            await rt.drain(10)
            assert (await rt.describe_execution(ex_id)).waiting[0].startswith("T: retry interval")
            done = await rt.wait_execution(ex_id, 10)
            assert done.output == {"retries": {"n": 1}}

    run(main())
    assert attempts == [1, 2]


@on_every_engine
def test_map_with_max_concurrency_inside_parallel(run: Run, engine_urls: Urls) -> None:
    calls: list[Any] = []
    item = machine(("Award", {"Type": "Task", "Resource": "service:loyalty.award",
                              "Parameters": {"customer.$": "$.c", "points": 1},
                              "OutputPath": "$.total"}))
    definition = machine(
        ("Both", {"Type": "Parallel", "Branches": [
            machine(("Each", {"Type": "Map", "ItemsPath": "$.items", "MaxConcurrency": 3,
                              "ItemSelector": {"c.$": "$$.Map.Item.Value",
                                               "i.$": "$$.Map.Item.Index"},
                              "ItemProcessor": item})),
            machine(("Hold", {"Type": "Wait", "Seconds": 1}),
                    ("Tag", {"Type": "Pass", "Result": "waited"})),
        ]}),
    )
    stack = Stack("s", services=[loyalty_service(calls)], workflows=[Workflow("w", definition)])

    async def main() -> None:
        async with stack.start(engine_urls[0], store=engine_urls[1]) as rt:
            items = ["a", "b", "a", "c", "a", "b", "a"]
            done = await rt.wait_execution(await rt.start_execution("w", {"items": items}), 10)
            assert done.status == "SUCCEEDED", done
            counts: dict[str, int] = {}
            expected = []
            for c in items:
                counts[c] = counts.get(c, 0) + 1
                expected.append(counts[c])
            assert done.output[0] == expected
            assert done.output[1] == "waited"
            history = await rt.execution_history(done.id)
            types = [e.type for e in history]
            assert types.count("MapIterationStarted") == len(items)
            assert "ParallelStateSucceeded" in types

    run(main())
    assert len(calls) == 7


@on_every_engine
def test_map_tolerance_and_parallel_failure(run: Run, engine_urls: Urls) -> None:
    items_machine = machine(("Check", {"Type": "Choice", "Choices": [
        {"Variable": "$", "NumericGreaterThan": 2, "Next": "No"}], "Default": "Yes"}),
        ("Yes", {"Type": "Succeed"}), ("No", {"Type": "Fail", "Error": "Too.Big", "Cause": "x"}))
    tolerant = machine(("M", {"Type": "Map", "ToleratedFailureCount": 2,
                              "ItemProcessor": items_machine}))
    strict = machine(("M", {"Type": "Map", "ToleratedFailureCount": 1,
                            "ItemProcessor": items_machine}))
    parallel = machine(("P", {"Type": "Parallel", "Branches": [
        machine(("Slow", {"Type": "Wait", "Seconds": 30})),
        machine(("Bad", {"Type": "Fail", "Error": "Branch.Bad"})),
    ]}))
    stack = Stack("s", workflows=[Workflow("tolerant", tolerant), Workflow("strict", strict),
                                  Workflow("parallel", parallel)])

    async def main() -> None:
        async with stack.start(engine_urls[0], store=engine_urls[1]) as rt:
            data = [1, 3, 2, 4]
            for wf in ("tolerant", "strict"):
                ex_id = await rt.start_execution(wf, data)
                done = await rt.wait_execution(ex_id, 10)
                ref = execute(stack.workflows[wf].definition, data)
                assert (done.status, done.output, done.error) == (ref.status, ref.output,
                                                                  ref.error)
            done = await rt.wait_execution(await rt.start_execution("parallel", {}), 10)
            assert (done.status, done.error) == ("FAILED", "Branch.Bad")
            left = await rt.engine.kv_scan(NS, f"th:{done.id}:")
            assert left == []  # the waiting sibling was stopped too

    run(main())


@on_every_engine
def test_execution_timeout_and_stop(run: Run, engine_urls: Urls) -> None:
    slow = machine(("Hold", {"Type": "Wait", "Seconds": 60}), TimeoutSeconds=1)
    stack = Stack("s", workflows=[Workflow("slow", slow)])

    async def main() -> None:
        async with stack.start(engine_urls[0], store=engine_urls[1]) as rt:
            a = await rt.start_execution("slow", {})
            b = await rt.start_execution("slow", {})
            await rt.stop_execution(b, error="Ops.Stop", cause="by hand")
            done = await rt.wait_execution(b, 10)
            assert (done.status, done.error, done.cause) == ("ABORTED", "Ops.Stop", "by hand")
            done = await rt.wait_execution(a, 10)
            assert (done.status, done.error) == ("TIMED_OUT", "States.Timeout")
            types = [e.type for e in await rt.execution_history(a)]
            assert types[-1] == "ExecutionTimedOut"

    run(main())


# ------------------------------------------------------------------------------ tokens


def token_stack(answer: str = "success") -> Stack:
    definition = machine(
        ("Ask", {"Type": "Task", "Resource": "event:approval_requested.waitForTaskToken",
                 "Parameters": {"order.$": "$.order", "token.$": "$$.Task.Token"},
                 "ResultPath": "$.approval", "TimeoutSeconds": 30}),
    )
    approvals = Service("approvals")

    @approvals.on({"type": ["approval_requested"]})
    async def approve(event: Event, ctx: Context) -> None:
        await ctx.store.put(event.data["order"], "approved")
        if answer == "success":
            await ctx.send_task_success(event.data["token"], {"by": "bot"})
        elif answer == "failure":
            await ctx.send_task_failure(event.data["token"], "Approval.Denied", "too big")
        else:
            await ctx.store.put("token", event.data["token"])

    return Stack("s", services=[approvals], workflows=[Workflow("approve", definition)])


@on_every_engine
def test_task_token_answered_by_another_service(run: Run, engine_urls: Urls) -> None:
    async def main() -> None:
        async with token_stack().start(engine_urls[0], store=engine_urls[1]) as rt:
            ex_id = await rt.start_execution("approve", {"order": "o-1"})
            done = await rt.wait_execution(ex_id, 10)
            assert done.output == {"order": "o-1", "approval": {"by": "bot"}}
            assert await rt.store("approvals").get("o-1") == "approved"
            types = [e.type for e in await rt.execution_history(ex_id)]
            assert types[2:6] == ["TaskScheduled", "TaskStarted", "TaskSubmitted",
                                  "TaskSucceeded"]
        async with token_stack("failure").start(engine_urls[0], store=engine_urls[1]) as rt:
            done = await rt.wait_execution(await rt.start_execution("approve", {"order": "o"}))
            assert (done.status, done.error, done.cause) == (
                "FAILED", "Approval.Denied", "too big")

    run(main())


@on_every_engine
def test_task_token_api_and_its_errors(run: Run, engine_urls: Urls) -> None:
    async def main() -> None:
        async with token_stack("later").start(engine_urls[0], store=engine_urls[1]) as rt:
            ex_id = await rt.start_execution("approve", {"order": "o-2"})
            await rt.drain(10)
            token = await rt.store("approvals").get("token")
            described = await rt.describe_execution(ex_id)
            assert described.waiting[0].startswith("Ask: task token")
            assert [d.id for d in await rt.executions(status="RUNNING")] == [ex_id]
            await rt.send_task_heartbeat(token)  # no HeartbeatSeconds: only checks the token
            await rt.send_task_success(token, {"by": "human"})
            with pytest.raises(TaskTimedOut):
                await rt.send_task_success(token, {"by": "twice"})
            done = await rt.wait_execution(ex_id, 10)
            assert done.output["approval"] == {"by": "human"}
            with pytest.raises(InvalidToken):
                await rt.send_task_success("not a token")
            with pytest.raises(TaskDoesNotExist):
                await rt.send_task_failure("sp1." + "A" * 32)
            assert await rt.executions(status="RUNNING") == []
            assert [d.id for d in await rt.executions("approve", "SUCCEEDED")] == [ex_id]

    run(main())


@on_every_engine
def test_task_token_timeout_and_heartbeat(run: Run, engine_urls: Urls) -> None:
    definition = machine(
        ("Ask", {"Type": "Task", "Resource": "event:ask.waitForTaskToken",
                 "Parameters": {"token.$": "$$.Task.Token"}, "HeartbeatSeconds": 1,
                 "TimeoutSeconds": 10,
                 "Catch": [{"ErrorEquals": ["States.HeartbeatTimeout"], "Next": "Late",
                            "ResultPath": "$.error"}]}),
        ("Late", {"Type": "Pass"}),
    )
    tokens: list[str] = []
    svc = Service("worker")

    @svc.on({"type": ["ask"]})
    async def keep(event: Event) -> None:
        tokens.append(event.data["token"])

    @svc.on({"type": ["still_working"]})
    async def beat(event: Event, ctx: Context) -> None:  # a heartbeat from inside a delivery
        await ctx.send_task_heartbeat(event.data["token"])

    stack = Stack("s", services=[svc], workflows=[Workflow("w", definition)])

    async def main() -> None:
        async with stack.start(engine_urls[0], store=engine_urls[1]) as rt:
            ex_id = await rt.start_execution("w", {})
            await rt.drain(10)
            for i in range(4):  # heartbeats keep it alive past HeartbeatSeconds
                await asyncio.sleep(0.5)
                if i % 2:
                    await rt.send_task_heartbeat(tokens[0])
                else:
                    await rt.publish(Event(type="still_working", source="t",
                                           data={"token": tokens[0]}))
            assert (await rt.describe_execution(ex_id)).status == "RUNNING"
            done = await rt.wait_execution(ex_id, 10)  # then silence: heartbeat timeout
            assert done.output == {"error": {"Error": "States.HeartbeatTimeout", "Cause": ""}}
            with pytest.raises(TaskTimedOut):
                await rt.send_task_success(tokens[0], {})
            types = [e.type for e in await rt.execution_history(ex_id)]
            assert "TaskTimedOut" in types

    run(main())


@on_every_engine
def test_put_events_arn_and_answering_from_a_sync_handler(
    run: Run, engine_urls: Urls
) -> None:
    definition = machine(
        ("Ask", {"Type": "Task",
                 "Resource": "arn:aws:states:::events:putEvents.waitForTaskToken",
                 "Parameters": {"Entries": [{"DetailType": "check", "Source": "orders",
                                             "EventBusName": "arn:aws:events:::event-bus/ops",
                                             "Detail": {"token.$": "$$.Task.Token"}}]}}),
    )
    ops = Bus("ops")
    svc = Service("checker")

    @svc.on({"detail-type": ["check"], "source": ["orders"]}, bus="ops")
    def check(event: Event, ctx: Any) -> None:
        ctx.send_task_success(event.data["token"], "checked")

    stack = Stack("s", services=[svc], buses=[ops], workflows=[Workflow("w", definition)])

    async def main() -> None:
        async with stack.start(engine_urls[0], store=engine_urls[1]) as rt:
            done = await rt.wait_execution(await rt.start_execution("w", {}), 10)
            assert done.output == "checked"

    run(main())


# ------------------------------------------------------------------------------ starting


@on_every_engine
def test_start_is_idempotent_on_name(run: Run, engine_urls: Urls) -> None:
    stack = Stack("s", workflows=[Workflow("w", chain(2))])

    async def main() -> None:
        async with stack.start(engine_urls[0], store=engine_urls[1]) as rt:
            a = await rt.start_execution("w", {"x": 1}, name="order-1")
            assert await rt.start_execution("w", {"x": 1}, name="order-1") == a
            with pytest.raises(ExecutionAlreadyExists):
                await rt.start_execution("w", {"x": 2}, name="order-1")
            with pytest.raises(ExecutionDoesNotExist):
                await rt.describe_execution("w:nope")
            with pytest.raises(ConfigError):
                await rt.start_execution("w", {}, name="bad name")
            with pytest.raises(ConfigError, match="no workflow 'x'"):
                await rt.start_execution("x", {})
            await rt.wait_execution(a)
            assert len(await rt.executions()) == 1

    run(main())


@on_every_engine
def test_rule_targets_start_one_execution_per_event(run: Run, engine_urls: Urls) -> None:
    from setpiece.patterns import InputTransformer

    plain = Workflow("plain", chain(1))
    shaped = Workflow("shaped", chain(1))
    bus = Bus("default")
    bus.rule("start-plain", {"type": ["order_placed"]}, plain)
    bus.rule("start-shaped", {"type": ["order_placed"]}, WorkflowTarget("shaped"),
             transform=InputTransformer({"n": "$.detail.n"}, '{"order": <n>}'))
    stack = Stack("s", buses=[bus], workflows=[plain, shaped])

    async def main() -> None:
        async with stack.start(engine_urls[0], store=engine_urls[1]) as rt:
            event = await rt.publish(Event(type="order_placed", source="shop", data={"n": 4}))
            await rt.drain(10)
            await rt.publish(event)  # the same event again: no second execution
            await rt.drain(10)
            runs = await rt.executions()
            assert sorted(d.id for d in runs) == [f"plain:{event.id}", f"shaped:{event.id}"]
            by = {d.workflow: await rt.wait_execution(d.id) for d in runs}
            assert by["plain"].output["data"] == {"n": 4}
            assert by["plain"].output["type"] == "order_placed"
            assert by["shaped"].output == {"order": 4}

    run(main())


def test_running_executions_keep_their_definition_version(run: Run, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'v.db'}"
    v1 = Workflow("w", machine(("Hold", {"Type": "Wait", "Seconds": 1}),
                               ("Tag", {"Type": "Pass", "Result": "v1"})))
    v2 = Workflow("w", machine(("Tag", {"Type": "Pass", "Result": "v2"})))

    async def main() -> None:
        async with Stack("s", workflows=[v1]).start(engine=url) as rt:
            old = await rt.start_execution("w", {})
            await rt.drain(10)
        async with Stack("s", workflows=[v2]).start(engine=url) as rt:
            new = await rt.start_execution("w", {})
            assert (await rt.wait_execution(new, 10)).output == "v2"
            done = await rt.wait_execution(old, 10)
            assert (done.output, done.version) == ("v1", v1.version)

    run(main())


# ------------------------------------------------------------------------------ http


@on_setpiece_engines
async def test_http_task(setpiece_stack: StackStarter, setpiece_http: FakeHttp) -> None:
    quote = "https://pricing.example/quote"
    setpiece_http.answer(quote, method="POST", status=503, times=1)
    setpiece_http.answer(quote, method="POST", respond=lambda call: httpx.Response(
        200, json={"got": call.json()}))
    definition = machine(
        ("Call", {"Type": "Task", "Resource": f"http:POST {quote}", "ResultPath": "$.quote",
                  "Catch": [{"ErrorEquals": ["States.Http.StatusCode.503"], "Next": "Down",
                             "ResultPath": "$.error"}]}),
        ("Up", {"Type": "Succeed"}),
        ("Down", {"Type": "Pass", "End": True}),
    )
    rt = await setpiece_stack(Stack("s", workflows=[Workflow("w", definition)]))
    done = await rt.wait_execution(await rt.start_execution("w", {"ok": False}), 10)
    assert done.output["error"]["Error"] == "States.Http.StatusCode.503"
    done = await rt.wait_execution(await rt.start_execution("w", {"ok": True}), 10)
    assert done.output == {"ok": True, "quote": {"got": {"ok": True}}}
    assert [call.json() for call in setpiece_http.calls_to(quote)] == [{"ok": False}, {"ok": True}]


def test_timers_fire_once_across_two_runtimes(run: Run, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'two.db'}"
    calls: list[Any] = []
    definition = machine(("Hold", {"Type": "Wait", "Seconds": 1}),
                         ("Award", {"Type": "Task", "Resource": "service:loyalty.award",
                                    "Parameters": {"customer": "c", "points": 1}}))

    def build() -> Stack:
        return Stack("s", services=[loyalty_service(calls)],
                     workflows=[Workflow("w", definition)])

    async def main() -> None:
        async with build().start(engine=url) as a, build().start(engine=url) as b:
            ids = [await a.start_execution("w", {}) for _ in range(20)]
            for ex_id in ids:
                assert (await b.wait_execution(ex_id, 20)).status == "SUCCEEDED"
            assert await a.store("loyalty").get("c") == 20
            fired = await a.engine.kv_scan(NS, "h:", 100_000)
            assert len(fired) >= 20

    run(main())
    # Effects happen once (the count above); a call whose batch lost a race to the other
    # worker (both owned a partition while joining) ran but committed nothing.
    assert len(calls) >= 20


def test_unit_of_work_cancels_timers_set_earlier_in_the_batch(run: Run) -> None:
    from setpiece.engine import open_engine
    from setpiece.engine.contract import Timer
    from setpiece.runtime.unit import Attempt, Batch

    async def main() -> None:
        engine = await open_engine("memory")
        try:
            batch = Batch(engine)
            first = Attempt(batch)
            first.timers.append(Timer("ns", "t", 10.0))
            assert first.merge(None)
            second = Attempt(batch)
            second.cancel_timers.append(("ns", "t"))
            assert second.merge(None)
            unit: UnitOfWork = batch.unit()
            await engine.commit(UnitOfWork(timers=[Timer("ns", "t", 5.0)]))
            await engine.commit(unit)
            assert await engine.timers("ns") == []
        finally:
            await engine.close()

    run(main())
