"""``python -m examples.tasks``: create, assign and complete tasks over HTTP, in process, and
print the board (the projection) and a task (the aggregate)."""

from __future__ import annotations

import asyncio
import json

import httpx

from examples.tasks.app import AUDIENCE, DEV_SECRET, ISSUER, build_stack
from setpiece import mint_token


async def demo() -> None:
    async with build_stack().start("memory") as rt:
        transport = httpx.ASGITransport(app=rt.asgi())
        token = mint_token(DEV_SECRET, subject="demo", scopes=["tasks:write", "tasks:read"],
                           issuer=ISSUER, audience=AUDIENCE, expires_in=600)
        async with httpx.AsyncClient(transport=transport, base_url="http://tasks",
                                     headers={"authorization": f"Bearer {token}"}) as http:
            ids = []
            for title in ("Write the release notes", "Review the API", "Plan the sprint"):
                made = (await http.post("/tasks", json={"title": title})).json()
                ids.append(made["id"])
                await http.post(f"/tasks/{made['id']}/assign", json={"assignee": "ada"})
            await http.post(f"/tasks/{ids[1]}/complete")
            await rt.drain()
            print("board:", json.dumps((await http.get("/board/ada")).json(), indent=2))
            print("task:", json.dumps((await http.get(f"/tasks/{ids[1]}")).json(), indent=2))


if __name__ == "__main__":
    asyncio.run(demo())
