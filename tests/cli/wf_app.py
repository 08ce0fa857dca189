"""A stack with a workflow that waits for a task token (for tests/cli/test_cli_workflows.py)."""

from __future__ import annotations

from setpiece import Context, Event, Service, Stack, Workflow

approve = Workflow("approve", {
    "StartAt": "Ask",
    "States": {
        "Ask": {
            "Type": "Task",
            "Resource": "event:approval_requested.waitForTaskToken",
            "Parameters": {"order.$": "$.order", "token.$": "$$.Task.Token"},
            "ResultPath": "$.approval",
            "End": True,
        }
    },
})
clerk = Service("clerk")


@clerk.on({"type": ["approval_requested"]})
async def note(event: Event, ctx: Context) -> None:
    await ctx.store.put("token", event.data["token"])


stack = Stack("wf", services=[clerk], workflows=[approve])
