"""`setpiece workflow` and `setpiece task`: start, answer a token, describe, history, list."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from typer.testing import CliRunner

from setpiece.cli.app import app
from tests.cli.wf_app import stack

TARGET = "tests.cli.wf_app:stack"


def cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.output


async def drive(url: str) -> str | None:
    """Run the stack until it is quiet; return the token the clerk saw."""
    async with stack.start(engine=url) as rt:
        await rt.drain(timeout=20)
        for _ in range(200):
            token = await rt.store("clerk").get("token")
            if token is not None:
                return str(token)
            await asyncio.sleep(0.02)
    return None


def test_a_token_workflow_from_the_command_line(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/wf.db"
    code, output = cli("workflow", "start", TARGET, "approve", "--input", '{"order": 7}',
                       "--name", "o7", "--engine", url)
    assert code == 0, output
    execution = output.strip()
    assert execution == "approve:o7"
    code, output = cli("workflow", "start", TARGET, "approve", "--input", '{"order": 8}',
                       "--name", "o7", "--engine", url)
    assert code == 2 and "o7" in output  # the same name with another input
    token = asyncio.run(drive(url))
    assert token
    code, output = cli("workflow", "describe", TARGET, execution, "--engine", url, "--json")
    described = json.loads(output)
    assert described["status"] == "RUNNING" and "task token" in " ".join(described["waiting"])
    code, output = cli("task", "success", TARGET, token,
                       "--output", '{"ok": true}', "--engine", url)
    assert code == 0, output
    code, output = cli("task", "success", TARGET, token, "--engine", url)
    assert code == 2 and "TaskTimedOut" not in output  # one red line, exit 2
    code, output = cli("task", "heartbeat", TARGET, "not-a-token", "--engine", url)
    assert code == 2
    asyncio.run(drive(url))
    code, output = cli("workflow", "describe", TARGET, execution, "--engine", url, "--json")
    described = json.loads(output)
    assert described["status"] == "SUCCEEDED"
    assert described["output"] == {"order": 7, "approval": {"ok": True}}
    code, output = cli("workflow", "history", TARGET, execution, "--engine", url, "--json")
    types = [e["type"] for e in json.loads(output)]
    assert types[0] == "ExecutionStarted" and "TaskSucceeded" in types
    assert types[-1] == "ExecutionSucceeded"
    code, output = cli("workflow", "list", TARGET, "--status", "SUCCEEDED", "--engine", url,
                       "--json")
    assert [d["id"] for d in json.loads(output)] == [execution]
    code, output = cli("workflow", "start", TARGET, "nope", "--engine", url)
    assert code == 2 and "no workflow 'nope'" in output
