"""JUST TASKS over HTTP: commands through the event-sourced task aggregate, refusals as 409,
the board projection, and the board rebuilt from the event store by a replay."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx

from examples.tasks.app import AUDIENCE, DEV_SECRET, ISSUER, build_stack
from setpiece import mint_token
from setpiece.engine import KVWrite, UnitOfWork

Run = Callable[[Any], Any]


def bearer(*scopes: str) -> dict[str, str]:
    token = mint_token(DEV_SECRET, subject="app", scopes=list(scopes), issuer=ISSUER,
                       audience=AUDIENCE, expires_in=600)
    return {"authorization": f"Bearer {token}"}


def test_tasks_over_http_event_sourced_and_projected(run: Run) -> None:
    write, read = bearer("tasks:write"), bearer("tasks:read")

    async def main() -> None:
        async with build_stack().start("memory") as rt:
            transport = httpx.ASGITransport(app=rt.asgi())
            async with httpx.AsyncClient(transport=transport, base_url="http://x") as http:
                assert (await http.post("/tasks", json={"title": "t"}, headers=read)
                        ).status_code == 403
                ids = []
                for title in ("notes", "review", "plan"):
                    made = await http.post("/tasks", json={"title": title}, headers=write)
                    assert made.status_code == 201 and made.json()["version"] == 1
                    ids.append(made.json()["id"])
                    r = await http.post(f"/tasks/{ids[-1]}/assign", json={"assignee": "ada"},
                                        headers=write)
                    assert r.json() == {"version": 2}
                r = await http.post(f"/tasks/{ids[1]}/complete", headers=write)
                assert r.json() == {"version": 3}
                again = await http.post(f"/tasks/{ids[1]}/complete", headers=write)
                assert again.status_code == 409
                assert "only an open, assigned task" in again.text
                assert (await http.post("/tasks/nope/complete", headers=write)
                        ).status_code == 409
                r = await http.post(f"/tasks/{ids[2]}/assign", json={"assignee": "bob"},
                                    headers=write)
                assert r.json() == {"version": 3}
                task = (await http.get(f"/tasks/{ids[1]}", headers=read)).json()
                assert task == {"id": ids[1], "version": 3, "status": "done",
                                "title": "review", "project": "inbox", "assignee": "ada"}
                assert (await http.get("/tasks/nope", headers=read)).status_code == 404
                await rt.drain(timeout=20)

                async def board(who: str) -> list[str]:
                    answer = (await http.get(f"/board/{who}", headers=read)).json()
                    return sorted(t["title"] for t in answer["tasks"])

                assert await board("ada") == ["notes"]
                assert await board("bob") == ["plan"]
                # the refused commands wrote nothing: versions as above
                assert [v for _, v in await rt.engine.event_sequences("agg:task")] == [
                    {ids[0]: 2, ids[1]: 3, ids[2]: 3}[i] for i in sorted(ids)]

                # wipe the projection, rebuild it from the event store
                rows = await rt.store("board").items()
                await rt.engine.commit(UnitOfWork(
                    writes=[KVWrite("svc:board", key, None) for key, _ in rows]))
                assert await board("ada") == []
                assert await rt.replay_aggregate("task", rule="board.project") == 8
                await rt.drain(timeout=20)
                assert await board("ada") == ["notes"]
                assert await board("bob") == ["plan"]
                assert dict(await rt.store("board").items()) == dict(rows)

    run(main())
