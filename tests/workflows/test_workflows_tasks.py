"""Task states: the tasks callable, failures, Retry, Catch, timeouts, task tokens."""

from __future__ import annotations

import datetime as dt
import itertools
import time
from typing import Any

from setpiece.workflows import TaskFailed, execute
from tests.workflows.helpers import machine, output, run_machine

LAMBDA = "arn:aws:lambda:us-east-1:123456789012:function:f"


class Flaky:
    """Fails ``failures`` times with ``error`` and then returns the input with a marker."""

    def __init__(self, failures: int, error: str = "Boom", delay: float = 0.0) -> None:
        self.failures = failures
        self.error = error
        self.delay = delay
        self.calls: list[tuple[str, Any]] = []

    def __call__(self, state: str, payload: Any) -> Any:
        self.calls.append((state, payload))
        if self.delay:
            time.sleep(self.delay)
        if len(self.calls) <= self.failures:
            raise TaskFailed(self.error, f"attempt {len(self.calls)}")
        return {"ok": payload}


def task(**extra: Any) -> dict[str, Any]:
    return {"Type": "Task", "Resource": LAMBDA, **extra}


def test_task_gets_parameters_and_result_flows_through_selector_and_result_path() -> None:
    seen: list[Any] = []

    def tasks(state: str, payload: Any) -> Any:
        seen.append((state, payload))
        return {"value": payload["n"] * 2, "noise": True}

    state = task(
        Parameters={"n.$": "$.n"},
        ResultSelector={"doubled.$": "$.value"},
        ResultPath="$.result",
    )
    assert output(machine(("Double", state)), {"n": 21}, tasks=tasks) == {
        "n": 21,
        "result": {"doubled": 42},
    }
    assert seen == [("Double", {"n": 21})]


def test_task_failure_and_plain_exceptions() -> None:
    ex = run_machine(machine(("T", task())), tasks=Flaky(9, "Custom.Error"))
    assert (ex.status, ex.error, ex.cause) == ("FAILED", "Custom.Error", "attempt 1")

    def broken(state: str, payload: Any) -> Any:
        raise KeyError("missing")

    ex = run_machine(machine(("T", task())), tasks=broken)
    assert (ex.error, ex.cause) == ("States.TaskFailed", "'missing'")


def test_without_tasks_a_task_state_fails_clearly() -> None:
    ex = run_machine(machine(("T", task())))
    assert ex.error == "States.TaskFailed"
    assert "without tasks=" in str(ex.cause)


def test_retry_with_backoff_and_max_delay_on_the_virtual_clock() -> None:
    flaky = Flaky(3)
    retry = [
        {
            "ErrorEquals": ["Boom"],
            "IntervalSeconds": 2,
            "BackoffRate": 3,
            "MaxAttempts": 3,
            "MaxDelaySeconds": 10,
        }
    ]
    state = task(Retry=retry, Parameters={"try.$": "$$.State.RetryCount"})
    start = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    ex = execute(machine(("T", state)), {}, tasks=flaky, start_time=start)
    assert ex.output == {"ok": {"try": 3}}
    assert [p["try"] for _, p in flaky.calls] == [0, 1, 2, 3]
    scheduled = [e.timestamp for e in ex.history if e.type == "TaskScheduled"]
    gaps = [round((b - a).total_seconds()) for a, b in itertools.pairwise(scheduled)]
    assert gaps == [2, 6, 10]  # 2, 2*3, min(2*9, 10)


def test_retry_exhausted_then_caught_with_result_path() -> None:
    definition = machine(
        (
            "T",
            task(
                Retry=[{"ErrorEquals": ["States.ALL"], "MaxAttempts": 2, "IntervalSeconds": 1}],
                Catch=[{"ErrorEquals": ["Boom"], "ResultPath": "$.err", "Next": "Handled"}],
                End=True,
            ),
        ),
        ("Handled", {"Type": "Pass", "End": True}),
    )
    flaky = Flaky(10)
    assert output(definition, {"in": 1}, tasks=flaky) == {
        "in": 1,
        "err": {"Error": "Boom", "Cause": "attempt 3"},
    }
    assert len(flaky.calls) == 3


def test_retriers_and_catchers_are_tried_in_order_and_task_failed_is_a_wildcard() -> None:
    definition = machine(
        (
            "T",
            task(
                Retry=[
                    {"ErrorEquals": ["Other"], "MaxAttempts": 5},
                    {"ErrorEquals": ["States.TaskFailed"], "MaxAttempts": 1},
                ],
                Catch=[
                    {"ErrorEquals": ["Nope"], "Next": "A"},
                    {"ErrorEquals": ["States.ALL"], "Next": "B"},
                ],
                End=True,
            ),
        ),
        ("A", {"Type": "Pass", "Result": "A", "End": True}),
        ("B", {"Type": "Pass", "Result": "B", "End": True}),
    )
    flaky = Flaky(10, "My.Error")
    assert output(definition, tasks=flaky) == "B"
    assert len(flaky.calls) == 2


def test_max_attempts_zero_never_retries() -> None:
    flaky = Flaky(10)
    state = task(Retry=[{"ErrorEquals": ["States.ALL"], "MaxAttempts": 0}])
    assert run_machine(machine(("T", state)), tasks=flaky).error == "Boom"
    assert len(flaky.calls) == 1


def test_states_runtime_is_never_caught() -> None:
    definition = machine(
        (
            "T",
            task(
                OutputPath="$.missing.deep",
                Catch=[{"ErrorEquals": ["States.Runtime"], "Next": "C"}],
                End=True,
            ),
        ),
        ("C", {"Type": "Succeed"}),
    )
    ex = run_machine(definition, tasks=lambda s, p: {})
    assert ex.error == "States.Runtime"
    assert ex.cause is not None and ex.cause.endswith("Missing property in path $['missing']")


def test_a_slow_task_times_out_and_a_caught_timeout_has_an_empty_cause() -> None:
    # One slow run covers TimeoutSecondsPath, States.TaskFailed not matching a timeout, and
    # the caught error output.
    catch = [
        {"ErrorEquals": ["States.TaskFailed"], "Next": "Wrong"},
        {"ErrorEquals": ["States.Timeout"], "Next": "C"},
    ]
    definition = machine(
        ("T", task(TimeoutSecondsPath="$.t", Catch=catch, End=True)),
        ("Wrong", {"Type": "Fail"}),
        ("C", {"Type": "Pass", "End": True}),
    )
    slow = Flaky(0, delay=1.05)
    assert output(definition, {"t": 1}, tasks=slow) == {"Error": "States.Timeout", "Cause": ""}


def test_heartbeat_timeout() -> None:
    ex = run_machine(
        machine(("T", task(HeartbeatSeconds=1, TimeoutSeconds=5))), tasks=Flaky(0, delay=1.05)
    )
    assert ex.error == "States.HeartbeatTimeout"


def test_fast_tasks_do_not_time_out() -> None:
    assert output(machine(("T", task(TimeoutSeconds=1))), {"x": 1}, tasks=Flaky(0)) == {
        "ok": {"x": 1}
    }


def test_wait_for_task_token_exposes_a_token() -> None:
    state = {
        "Type": "Task",
        "Resource": "arn:aws:states:::sqs:sendMessage.waitForTaskToken",
        "Parameters": {"token.$": "$$.Task.Token"},
        "End": True,
    }
    got: list[Any] = []
    out = output(machine(("T", state)), tasks=lambda s, p: got.append(p) or {"done": True})
    assert out == {"done": True}
    assert isinstance(got[0]["token"], str) and len(got[0]["token"]) == 36


def test_task_results_must_be_json() -> None:
    ex = run_machine(machine(("T", task())), tasks=lambda s, p: object())
    assert ex.error == "States.TaskFailed" and "not JSON" in str(ex.cause)


def test_oversized_results_exceed_the_data_limit_and_states_all_does_not_catch_them() -> None:
    definition = machine(
        ("T", task(Catch=[{"ErrorEquals": ["States.ALL"], "Next": "C"}], End=True)),
        ("C", {"Type": "Succeed"}),
    )
    ex = run_machine(definition, tasks=lambda s, p: "x" * 300_000)
    assert ex.error == "States.DataLimitExceeded"


def test_history_of_a_retried_task() -> None:
    state = task(Retry=[{"ErrorEquals": ["States.ALL"], "MaxAttempts": 1}])
    ex = run_machine(machine(("T", state)), tasks=Flaky(1))
    assert [e.type for e in ex.history] == [
        "ExecutionStarted",
        "TaskStateEntered",
        "TaskScheduled",
        "TaskStarted",
        "TaskFailed",
        "TaskScheduled",
        "TaskStarted",
        "TaskSucceeded",
        "TaskStateExited",
        "ExecutionSucceeded",
    ]
