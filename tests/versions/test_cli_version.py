"""`setpiece version status | promote | abort | share` on an SQLite file."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from typer.testing import CliRunner

from setpiece import Event
from setpiece.cli.app import app
from tests.versions.app import stack

TARGET = "tests.versions.app:stack"


def cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.output


async def feed(url: str, n: int) -> None:
    async with stack.start(engine=url) as rt:
        await rt.publish_many([Event(type="purchase", source="till", partitionkey=f"c{i}")
                               for i in range(n)])
        await rt.drain(timeout=50)


def test_status_promote_abort_and_share(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/versioned.db"
    asyncio.run(feed(url, 40))
    code, output = cli("version", "status", TARGET, "--engine", url, "--json")
    assert code == 0, output
    reports = {r["service"]: r for r in json.loads(output)}
    canary, shadow = reports["loyalty"], reports["search"]
    assert (canary["mode"], canary["status"], canary["share"]) == ("canary", "active", 0.25)
    total = canary["primary"]["deliveries"] + canary["candidate"]["deliveries"]
    assert total == 40 and 0 < canary["candidate"]["deliveries"] < 40
    assert (shadow["mode"], shadow["version"]) == ("shadow", "7")
    assert shadow["shadow"]["compared"] == 40 and shadow["shadow"]["mismatched"] == 40
    code, output = cli("version", "status", TARGET, "--engine", url)
    assert code == 0 and "loyalty" in output and "search" in output and "mismatch" in output

    code, output = cli("version", "share", TARGET, "loyalty", "0.5", "--engine", url)
    assert code == 0 and "share 50%" in output, output
    code, output = cli("version", "share", TARGET, "search", "0.5", "--engine", url)
    assert code == 2 and "shadow" in output
    code, output = cli("version", "share", TARGET, "loyalty", "1.5", "--engine", url)
    assert code == 2 and "[0, 1]" in output

    code, output = cli("version", "promote", TARGET, "loyalty", "--engine", url)
    assert code == 0 and "is promoted" in output, output
    code, output = cli("version", "abort", TARGET, "loyalty", "--engine", url)
    assert code == 2 and "already promoted" in output
    code, output = cli("version", "abort", TARGET, "search", "--engine", url)
    assert code == 0 and "is aborted" in output
    code, output = cli("version", "promote", TARGET, "nope", "--engine", url)
    assert code == 2 and "no rollout" in output

    asyncio.run(feed(url, 40))  # the running stack follows the state the CLI set
    code, output = cli("version", "status", TARGET, "loyalty", "--engine", url, "--json")
    (loyalty,) = json.loads(output)
    assert loyalty["status"] == "promoted"
    # Counting is for the abort policy: it stops once a rollout is promoted or aborted.
    assert loyalty["candidate"] == canary["candidate"]

    async def check() -> None:
        async with stack.start(engine=url) as rt:
            values = [v for _, v in await rt.store("loyalty").items()]
            assert values == ["v2"] * 40  # the same 40 keys, all handled last by version 2
            report = await rt.versions.report("search")
            assert report.compared == 40  # the aborted shadow ran no more

    asyncio.run(check())
