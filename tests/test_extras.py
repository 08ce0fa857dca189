"""setpiece without its optional extras: the core runs, and each entry point that needs an extra
says what to ``pip install`` instead of failing with a bare ``ModuleNotFoundError``.

Each case runs in a fresh interpreter in which the named distributions cannot be imported.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

# The top-level modules of every optional dependency in pyproject.toml.
EXTRAS = ["jsonata", "httpx", "jwt", "uvicorn", "nats", "asyncpg", "typer", "rich", "watchfiles",
          "starlette", "pydantic", "opentelemetry", "prometheus_client", "selenium",
          "websockets", "wsproto"]

_BLOCK = """
import sys

class _Missing:
    def __init__(self, names):
        self.names = names

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in self.names:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, _Missing(set(sys.argv[1].split(","))))
"""


def without(modules: list[str], code: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a new interpreter that cannot import ``modules``."""
    script = _BLOCK + textwrap.dedent(code)
    return subprocess.run([sys.executable, "-c", script, ",".join(modules)],
                          capture_output=True, text=True, timeout=90)


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_the_core_runs_without_any_extra() -> None:
    out = ok(without(EXTRAS, """
        import asyncio
        from setpiece import Event, Service, Stack

        svc = Service("counter")

        @svc.on({"type": ["hit"]})
        async def count(event, ctx):
            await ctx.store.put("n", await ctx.store.get("n", 0) + 1)

        async def main():
            async with Stack("s", services=[svc]).start("memory") as rt:
                await rt.publish(Event(type="hit", source="t"))
                await rt.drain(timeout=30)
                print(await rt.store("counter").get("n"))

        asyncio.run(main())
    """))
    assert out.split() == ["1"]


def test_a_jsonpath_workflow_runs_without_jsonata_and_a_jsonata_one_says_what_to_install(
) -> None:
    out = ok(without(["jsonata"], """
        from setpiece import ConfigError, Workflow
        from setpiece.workflows import execute

        jsonpath = {"StartAt": "P", "States": {"P": {
            "Type": "Pass", "Parameters": {"x.$": "$.v"}, "End": True}}}
        print(execute(jsonpath, {"v": 3}).output)
        Workflow("plain", jsonpath)
        jsonata = {"QueryLanguage": "JSONata", "StartAt": "P", "States": {"P": {
            "Type": "Pass", "Output": "{% $states.input.v %}", "End": True}}}
        try:
            Workflow("query", jsonata)
        except ConfigError as exc:
            print("ConfigError:", exc)
    """))
    assert "{'x': 3}" in out
    assert "ConfigError:" in out and "pip install 'setpiece[workflows]'" in out


def test_jwt_auth_without_pyjwt_says_what_to_install() -> None:
    out = ok(without(["jwt"], """
        from setpiece import ConfigError, JWTAuth, mint_token

        for make in (lambda: JWTAuth(secret="s" * 32), lambda: mint_token("s" * 32, subject="u")):
            try:
                make()
            except ConfigError as exc:
                print("ConfigError:", exc)
    """))
    assert out.count("pip install 'setpiece[http]'") == 2


def test_serving_http_without_uvicorn_says_what_to_install() -> None:
    out = ok(without(["uvicorn"], """
        from setpiece import ConfigError, Stack
        from setpiece.gateway import serve

        try:
            serve(Stack("s"), "127.0.0.1", 0)
        except ConfigError as exc:
            print("ConfigError:", exc)
    """))
    assert "ConfigError:" in out and "pip install 'setpiece[http]'" in out


def test_an_http_target_without_httpx_dead_letters_with_the_install_hint() -> None:
    out = ok(without(["httpx"], """
        import asyncio
        from setpiece import Bus, Event, HttpTarget, RetryPolicy, Stack

        bus = Bus("default")
        bus.rule("out", {"type": ["t"]}, HttpTarget("http://127.0.0.1:9/hook"),
                 retry=RetryPolicy(max_attempts=1))

        async def main():
            async with Stack("s", buses=[bus]).start("memory") as rt:
                await rt.publish(Event(type="t", source="x"))
                await rt.drain(timeout=30)
                [letter] = await rt.dead_letters()
                print(letter.error)

        asyncio.run(main())
    """))
    assert "ConfigError" in out and "pip install 'setpiece[http]'" in out


@pytest.mark.parametrize("missing", ["nats", "asyncpg"])
def test_the_production_engine_without_its_drivers_says_what_to_install(missing: str) -> None:
    out = ok(without([missing], """
        import asyncio
        from setpiece import ConfigError
        from setpiece.engine import open_engine

        try:
            asyncio.run(open_engine("nats://127.0.0.1:4222", store="postgresql://x@localhost/x"))
        except ConfigError as exc:
            print("ConfigError:", exc)
    """))
    assert "ConfigError:" in out and "pip install 'setpiece[nats,postgres]'" in out


@pytest.mark.parametrize("missing", ["typer", "rich"])
def test_the_command_line_without_its_extra_says_what_to_install(missing: str) -> None:
    result = without([missing], """
        from setpiece.cli import main

        main(["--help"])
    """)
    assert result.returncode == 1
    assert f"needs {missing}" in result.stderr and "pip install 'setpiece[cli]'" in result.stderr


def test_setpiece_dev_without_watchfiles_says_what_to_install() -> None:
    result = without(["watchfiles"], """
        from setpiece.cli import main

        main(["dev", "nowhere:stack"])
    """)
    assert result.returncode != 0
    assert "pip install 'setpiece[cli]'" in result.stdout + result.stderr


def test_observability_without_the_otel_extra_says_what_to_install() -> None:
    out = ok(without(["opentelemetry", "prometheus_client"], """
        import asyncio
        from setpiece import ConfigError, Observability, Stack

        async def main():
            try:
                async with Stack("s", observe=Observability()).start("memory"):
                    pass
            except ConfigError as exc:
                print(exc)

        asyncio.run(main())
    """))
    assert "pip install 'setpiece[otel]'" in out and "prometheus_client" in out


@pytest.mark.parametrize("missing", [["starlette"], ["websockets", "wsproto"], ["uvicorn"]])
def test_sim_serve_without_its_extra_says_what_to_install(missing: list[str]) -> None:
    shop = "tests/sim/archs/shop_arch.json"
    result = without(missing, f"""
        import sys
        from setpiece.cli import main
        sys.argv = ["setpiece", "sim", {shop!r}, "--duration", "1", "--serve"]
        main()
    """)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "pip install 'setpiece[sim]'" in result.stdout + result.stderr
