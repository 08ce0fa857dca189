"""The orchestrated product-registration example: every registration runs the workflow, the
discount comes back through a task token, and every effect happens once."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from examples.product_orchestration.app import build_stack
from examples.product_orchestration.demo import SAMPLE, main, registered
from examples.product_orchestration.demo import run as run_demo

Run = Callable[[Any], Any]


def test_each_registration_is_orchestrated_once(run: Run) -> None:
    async def scenario() -> None:
        async with build_stack().start(engine="memory") as rt:
            events = await rt.publish_many([registered(form) for form in SAMPLE])
            await rt.publish(events[0])  # delivered twice: still one execution
            await rt.drain(30)
            executions = await rt.executions("register-product")
            assert sorted(e.name for e in executions) == sorted(e.id for e in events)
            for ex in executions:
                done = await rt.wait_execution(ex.id, 30)
                assert done.status == "SUCCEEDED", done
                form = next(f for f in SAMPLE if f["serial_number"] == done.output["serial"])
                assert done.output["customer"] == form["customer_id"]
                assert done.output["rewards"]["loyalty"] == {"points": 100}
                assert done.output["rewards"]["discount"]["code"].startswith("D-")
                types = [e.type for e in await rt.execution_history(ex.id)]
                assert "TaskSubmitted" in types  # the discount came back with a token
            await rt.drain(30)
            assert dict(await rt.store("loyalty").items()) == {"cu-101": 300, "cu-102": 100}
            emails = dict(await rt.store("emails").items())
            assert sorted(emails) == sorted(f["serial_number"] for f in SAMPLE)
            assert emails["SN-B7000311"]["to"] == "grace@example.com"
            assert len(await rt.store("support").items()) == len(SAMPLE)
            assert await rt.executions(status="RUNNING") == []
            assert await rt.dead_letters() == []

    run(scenario())


def test_demo_runs(run: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = io.StringIO()
    done = run(run_demo(f"sqlite:///{tmp_path / 'demo.db'}", out))
    assert len(done) == len(SAMPLE)
    text = out.getvalue()
    assert "4 executions of register-product" in text and "emails sent: 4" in text
    monkeypatch.chdir(tmp_path)
    assert main([]) == 0
