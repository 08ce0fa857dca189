"""The pytest plugin itself, run in inner pytest sessions (pytester): how it loads, how the
engine is chosen, what it starts and what it stops and removes afterwards."""

from __future__ import annotations

import asyncio
import json
from importlib import metadata

import pytest

from setpiece.testing import Servers

STACK = '''
from setpiece import Context, Event, Service, Stack

svc = Service("s")

@svc.on({"type": ["a"]})
async def handle(event: Event, ctx: Context) -> Event:
    return Event(type="b", data={"n": event.data["n"] + 1})

stack = Stack("x", services=[svc])
'''


def test_an_installed_setpiece_registers_the_plugin() -> None:
    found = {ep.name: ep.value for ep in metadata.entry_points(group="pytest11")}
    assert found.get("setpiece.testing") == "setpiece.testing"


def test_pytest_plugins_loads_it_without_the_entry_point(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    pytester.makepyfile(STACK + '''
pytest_plugins = ["setpiece.testing"]

async def test_flow(setpiece_stack):
    rt = await setpiece_stack(stack)
    await rt.publish(Event(type="a", source="t", data={"n": 1}))
    assert (await rt.expect({"type": ["b"]}, timeout=5)).data == {"n": 2}
''')
    pytester.runpytest_subprocess("-p", "no:cacheprovider").assert_outcomes(passed=1)


def test_the_engine_comes_from_parameter_marker_option_or_the_default(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(STACK + '''
import json, pytest

def note(name, urls):
    with open(f"{name}.json", "w") as out:
        json.dump([urls.kind, urls.engine], out)

async def test_default(setpiece_stack):
    note("default", setpiece_stack.urls)
    await setpiece_stack(stack)

@pytest.mark.setpiece(engine="sqlite")
async def test_marker(setpiece_stack, tmp_path):
    note("marker", setpiece_stack.urls)
    rt = await setpiece_stack(stack)
    assert setpiece_stack.urls.engine == f"sqlite:///{tmp_path / 'setpiece.db'}"
    assert (tmp_path / "setpiece.db").exists()

@pytest.mark.parametrize("setpiece_engine", ["sqlite"])
def test_parameter(setpiece_urls):
    note("parameter", setpiece_urls)
''')
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=3)
    kinds = {name: json.loads((pytester.path / f"{name}.json").read_text())[0]
             for name in ("default", "marker", "parameter")}
    assert kinds == {"default": "memory", "marker": "sqlite", "parameter": "sqlite"}
    module = "test_the_engine_comes_from_parameter_marker_option_or_the_default.py"
    pytester.runpytest("-p", "no:cacheprovider", "--setpiece-engine=sqlite",
                       f"{module}::test_default").assert_outcomes(passed=1)
    assert json.loads((pytester.path / "default.json").read_text())[0] == "sqlite"
    result = pytester.runpytest("-p", "no:cacheprovider", "--setpiece-engine=kafka")
    assert "invalid choice: 'kafka'" in "\n".join(result.errlines)
    pytester.makepyfile(test_bad='''
import pytest

@pytest.mark.setpiece(engine="kafka")
def test_bad(setpiece_urls):
    pass
''')
    result = pytester.runpytest("-p", "no:cacheprovider", "test_bad.py")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*setpiece engine 'kafka': must be one of memory, sqlite, nats*"])


def test_stacks_are_stopped_when_the_test_ends_even_when_it_fails(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(STACK + '''
started = []

async def test_fails(setpiece_stack):
    started.append(await setpiece_stack(stack))
    started.append(await setpiece_stack(stack))
    assert setpiece_stack.running == 2
    raise RuntimeError("boom")

async def test_block(setpiece_stack):
    async with setpiece_stack(stack) as rt:
        assert rt.health()["status"] == "ok"
    assert rt.health()["status"] == "unhealthy" and setpiece_stack.running == 0
    await setpiece_stack.stop(await setpiece_stack(stack))

def test_after():
    assert [rt.health()["status"] for rt in started] == ["unhealthy", "unhealthy"]
''')
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(["*RuntimeError: boom*"])


def test_a_failed_expectation_reports_the_nearest_events(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(STACK + '''
async def test_expect(setpiece_stack):
    rt = await setpiece_stack(stack)
    await rt.publish(Event(type="a", source="t", data={"n": 1}))
    await rt.expect({"type": ["b"], "data": {"n": [5]}}, timeout=0.5)
''')
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    assert "AssertionError: no event matching {'type': ['b'], 'data': {'n': [5]}}" in out
    assert out.index('1 of 2 fields match, on bus default: {"type":"b"') < out.index(
        '0 of 2 fields match, on bus default: {"type":"a"')
    assert "flow.py" not in out  # the runtime's frames are hidden from the traceback


def test_async_tests_of_other_runners_are_left_alone(pytester: pytest.Pytester) -> None:
    pytester.makepyfile('''
async def test_plain():
    pass
''')
    result = pytester.runpytest("-p", "no:cacheprovider")
    outcomes = result.parseoutcomes()
    assert outcomes.get("passed", 0) == 0  # pytest's own answer: not run (skipped or failed)


async def _namespace_left(servers: Servers, namespace: str) -> tuple[bool, list[str]]:
    import asyncpg
    import nats

    conn = await asyncpg.connect(servers.postgres_url)
    try:
        schema = await conn.fetchval(
            "SELECT count(*) FROM information_schema.schemata WHERE schema_name = $1", namespace
        )
    finally:
        await conn.close()
    nc = await nats.connect(servers.nats_url)
    try:
        reply = await nc.request("$JS.API.STREAM.NAMES",
                                 json.dumps({"subject": f"{namespace}.>"}).encode(), timeout=5)
        streams = json.loads(reply.data).get("streams") or []
    finally:
        await nc.close()
    return bool(schema), streams


@pytest.mark.servers
def test_on_nats_each_test_starts_empty_and_everything_is_removed_at_the_end(
    pytester: pytest.Pytester, setpiece_servers: Servers
) -> None:
    pytester.makepyfile(STACK + '''
import pytest

@svc.on({"type": ["a"]})
async def count(event: Event, ctx: Context) -> None:
    await ctx.store.put("seen", await ctx.store.get("seen", 0) + 1)

@pytest.mark.parametrize("n", [1, 2, 3])
async def test_on_nats(setpiece_stack, n):
    rt = await setpiece_stack(stack)
    assert [sum(await rt.engine.end_offsets(s.name)) for s in await rt.engine.streams()] == [
        0, 0], "the namespace holds records of an earlier test"
    assert await rt.store("s").get("seen") is None
    await rt.publish(Event(type="a", source="t", data={"n": n}))
    await rt.expect({"type": ["b"]}, timeout=10)
    await rt.drain(timeout=10)
    assert await rt.store("s").get("seen") == 1
    with open(f"namespace{n}.txt", "w") as out:
        out.write(setpiece_stack.urls.namespace)
''')
    pytester.runpytest(
        "-p", "no:cacheprovider", "--setpiece-engine=nats",
        f"--setpiece-nats={setpiece_servers.nats_url}",
        f"--setpiece-postgres={setpiece_servers.postgres_url}",
    ).assert_outcomes(passed=3)
    namespaces = {(pytester.path / f"namespace{n}.txt").read_text() for n in (1, 2, 3)}
    assert len(namespaces) == 1  # emptied after each test and given to the next
    for namespace in namespaces:  # and dropped when the session ended
        assert asyncio.run(_namespace_left(setpiece_servers, namespace)) == (False, [])


@pytest.mark.servers
@pytest.mark.timeout(240)
def test_xdist_workers_share_one_pair_of_servers(pytester: pytest.Pytester) -> None:
    pytest.importorskip("xdist")
    pytester.makepyfile(STACK + '''
import os, pytest

@pytest.mark.parametrize("n", range(4))
async def test_on_nats(setpiece_stack, setpiece_servers, n):
    rt = await setpiece_stack(stack)
    await rt.publish(Event(type="a", source="t", data={"n": n}))
    await rt.expect({"type": ["b"], "data": {"n": [n + 1]}}, timeout=10)
    with open(f"worker{n}.txt", "w") as out:
        out.write(f"{os.environ['PYTEST_XDIST_WORKER']} {setpiece_servers.nats_url} "
                  f"{setpiece_servers.nats is None}")
''')
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-n", "2",
                                           "--setpiece-engine=nats")
    result.assert_outcomes(passed=4)
    notes = [(pytester.path / f"worker{n}.txt").read_text().split() for n in range(4)]
    assert len({worker for worker, _, _ in notes}) == 2  # both workers ran tests...
    assert len({url for _, url, _ in notes}) == 1  # ...on the controller's one nats-server
    assert {started_here for _, _, started_here in notes} == {"True"}
