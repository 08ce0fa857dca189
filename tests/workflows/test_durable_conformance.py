"""The outside ASL corpus (../shared/conformance/asl) run as durable executions.

Each case becomes a ``Workflow`` whose Task states call one service handler; the handler plays
the case's task mocks (it knows the state by the task event's ``subject``). The durable driver
must reach the same status, output or error as Step Functions, with the same number of task
calls. Cases with Wait states, retry intervals or timeouts wait for real on durable timers, so
they run in the ``slow`` test. The corpus is read from beside the project, never copied into it.
"""

from __future__ import annotations

import copy
import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from setpiece import DefinitionError, Event, Service, Stack, TaskFailed, Workflow

CASES = Path(__file__).resolve().parents[2].parent / "shared" / "conformance" / "asl" / "cases.json"
TIMING = ('"Wait"', '"Retry"', "TimeoutSeconds", "HeartbeatSeconds")
Run = Callable[[Any], Any]

pytestmark = pytest.mark.skipif(not CASES.exists(), reason=f"no corpus at {CASES}")


class Mocks:
    """The corpus's task mocks: a result, an echo, a failure, or a sequence of those."""

    def __init__(self, spec: dict[str, Any] | None) -> None:
        self.spec = spec or {}
        self.calls: Counter[str] = Counter()

    def __call__(self, state: str, task_input: Any) -> Any:
        self.calls[state] += 1
        b = self.spec.get(state)
        if isinstance(b, dict) and isinstance(b.get("sequence"), list):
            b = b["sequence"][min(self.calls[state] - 1, len(b["sequence"]) - 1)]
        if b is None or b == "echo" or (isinstance(b, dict) and b.get("echo")):
            return copy.deepcopy(task_input)
        if "return" in b:
            return copy.deepcopy(b["return"])
        raise TaskFailed(b["fail"]["error"], b["fail"].get("cause"))


def _norm(x: Any) -> Any:
    if isinstance(x, bool) or x is None or isinstance(x, str):
        return x
    if isinstance(x, int | float):
        return float(x)
    if isinstance(x, list):
        return [_norm(i) for i in x]
    return {k: _norm(v) for k, v in x.items()}


def _rewrite(machine: dict[str, Any]) -> None:
    for st in machine.get("States", {}).values():
        if st.get("Type") == "Task":
            st["Resource"] = "service:mock.run"
        for branch in st.get("Branches") or []:
            _rewrite(branch)
        for key in ("ItemProcessor", "Iterator"):
            if isinstance(st.get(key), dict):
                _rewrite(st[key])


def _run_corpus(run: Run, timing: bool) -> None:
    chosen: list[tuple[dict[str, Any], Workflow, Mocks]] = []
    for i, case in enumerate(json.loads(CASES.read_text())):
        text = json.dumps(case["definition"])
        if "ItemReader" in text or any(w in text for w in TIMING) != timing:
            continue
        definition = copy.deepcopy(case["definition"])
        if isinstance(definition, dict):
            _rewrite(definition)
        try:
            workflow = Workflow(f"c{i}", definition)
        except DefinitionError:
            assert "output" not in case["expected"]
            continue
        chosen.append((case, workflow, Mocks(case.get("task_mocks"))))
    mocks = {wf.name: m for _, wf, m in chosen}
    svc = Service("mock")

    @svc.task(name="run")
    async def run_mock(event: Event) -> Any:
        return mocks[(event.correlationid or "").split(":")[0]](event.subject or "", event.data)

    stack = Stack("corpus", services=[svc], workflows=[wf for _, wf, _ in chosen])
    failures: list[str] = []

    async def main() -> None:
        async with stack.start(engine="memory") as rt:
            ids = [await rt.start_execution(wf.name, copy.deepcopy(case["input"]))
                   for case, wf, _ in chosen]
            for (case, _, mock), ex_id in zip(chosen, ids, strict=True):
                done = await rt.wait_execution(ex_id, 40)
                expected = case["expected"]
                if "output" in expected:
                    ok = done.status == "SUCCEEDED" and _norm(done.output) == _norm(
                        expected["output"])
                else:
                    ok = done.status != "SUCCEEDED" and expected.get("error") in (None,
                                                                                  done.error)
                for state, n in (case.get("expected_task_invocations") or {}).items():
                    ok = ok and mock.calls[state] == n
                if not ok:
                    failures.append(f"{case['id']}: {done.status} {done.output} {done.error}")

    run(main())
    assert len(chosen) > (20 if timing else 700)
    assert failures == []


def test_corpus_runs_durably_with_the_same_results(run: Run) -> None:
    _run_corpus(run, timing=False)


@pytest.mark.timeout(300)  # the corpus cases with real timers
@pytest.mark.slow
def test_corpus_cases_with_real_timers(run: Run) -> None:
    _run_corpus(run, timing=True)
