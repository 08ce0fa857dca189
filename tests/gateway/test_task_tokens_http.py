"""Task tokens over HTTP: POST /workflows/tasks/{success|failure|heartbeat}, scope-guarded."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from setpiece import Context, Event, JWTAuth, Service, Stack, Workflow, mint_token

SECRET = "a-test-secret-of-at-least-32-bytes!"


def build() -> tuple[Stack, dict[int, str]]:
    seen: dict[int, str] = {}
    workflow = Workflow("approve", {
        "StartAt": "Ask",
        "States": {"Ask": {
            "Type": "Task", "Resource": "event:asked.waitForTaskToken",
            "Parameters": {"token.$": "$$.Task.Token", "n.$": "$.n"}, "ResultPath": "$.answer",
            "End": True,
        }},
    })
    desk = Service("desk")

    @desk.on({"type": ["asked"]})
    async def asked(event: Event, ctx: Context) -> None:
        seen[event.data["n"]] = event.data["token"]

    auth = JWTAuth(secret=SECRET, issuer="me", audience="app")
    return Stack("s", services=[desk], workflows=[workflow], auth=auth), seen


def headers(*scopes: str) -> dict[str, str]:
    token = mint_token(SECRET, subject="robot", scopes=list(scopes), issuer="me",
                       audience="app", expires_in=60)
    return {"authorization": f"Bearer {token}"}


def test_answering_tokens_over_http(run: Any) -> None:
    stack, seen = build()

    async def main() -> None:
        async with stack.start(engine="memory") as rt:
            transport = httpx.ASGITransport(app=rt.asgi())
            async with httpx.AsyncClient(transport=transport, base_url="http://x") as http:
                first = await rt.start_execution("approve", {"n": 1})
                second = await rt.start_execution("approve", {"n": 2})
                for _ in range(500):
                    if len(seen) == 2:
                        break
                    await asyncio.sleep(0.01)
                token_1, token_2 = seen[1], seen[2]
                url = "/workflows/tasks"
                no_scope = await http.post(f"{url}/success", json={"token": token_1},
                                           headers=headers("notes:read"))
                assert no_scope.status_code == 403
                ok = headers("workflows:tasks")
                assert (await http.post(f"{url}/heartbeat", json={"token": token_1},
                                        headers=ok)).status_code == 200
                answered = await http.post(f"{url}/success",
                                           json={"token": token_1, "output": {"yes": True}},
                                           headers=ok)
                assert answered.status_code == 200, answered.text
                again = await http.post(f"{url}/success", json={"token": token_1}, headers=ok)
                assert again.status_code == 400 and again.json()["error"] == "TaskTimedOut"
                bogus = await http.post(f"{url}/success", json={"token": "nope"}, headers=ok)
                assert bogus.json()["error"] == "InvalidToken"
                bad = await http.post(f"{url}/success", json={"output": 1}, headers=ok)
                assert bad.status_code == 400 and bad.json()["field"] == "body.token"
                failed = await http.post(f"{url}/failure", json={
                    "token": token_2, "error": "Rejected", "cause": "too big"}, headers=ok)
                assert failed.status_code == 200
                done_1 = await rt.wait_execution(first, timeout=10)
                done_2 = await rt.wait_execution(second, timeout=10)
                assert done_1.output == {"n": 1, "answer": {"yes": True}}
                assert (done_2.status, done_2.error, done_2.cause) == (
                    "FAILED", "Rejected", "too big")

    run(main())
