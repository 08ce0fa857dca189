"""``setpiece new service NAME``: a service module with a stack, and a test that passes."""

from __future__ import annotations

import keyword
import re
from pathlib import Path

from setpiece.cli._common import CliError

__all__ = ["new_service"]

_SERVICE = '''\
"""The {name} service."""

from __future__ import annotations

from setpiece import Context, Event, Service, Stack

service = Service("{name}")


@service.on({{"type": ["{name}.requested"]}})
async def handle(event: Event, ctx: Context) -> Event:
    """Count requests per customer, and say so."""
    customer = event.data["customer"]
    count = await ctx.store.get(customer, 0) + 1
    await ctx.store.put(customer, count)
    return Event(type="{name}.done", data={{"customer": customer, "count": count}})


stack = Stack("{name}", services=[service])
'''

_TEST = '''\
"""Tests for the {name} service: a fresh stack per test, from setpiece's pytest plugin
(``setpiece_stack``: ``--setpiece-engine=sqlite`` or ``nats`` runs them on another engine)."""

from __future__ import annotations

from setpiece import Event
from setpiece.testing import StackStarter

from {module} import stack

pytest_plugins = ["setpiece.testing"]  # loaded anyway where setpiece is installed


async def test_counts_requests_per_customer(setpiece_stack: StackStarter) -> None:
    rt = await setpiece_stack(stack)
    for _ in range(3):
        await rt.publish(Event(type="{name}.requested", source="test",
                               data={{"customer": "c-1"}}, partitionkey="c-1"))
    done = await rt.expect({{"type": ["{name}.done"], "data": {{"count": [3]}}}}, timeout=10)
    assert done.data == {{"customer": "c-1", "count": 3}}
    assert await rt.store("{name}").get("c-1") == 3
'''

_NAME = re.compile(r"[a-z][a-z0-9_-]{0,60}")  # fullmatch: '$' would allow a trailing newline


def new_service(name: str, directory: Path, *, force: bool = False) -> list[Path]:
    """Write ``<dir>/<module>.py`` and ``<dir>/test_<module>.py``; return their paths."""
    if not _NAME.fullmatch(name):
        raise CliError(
            f"service name {name!r}: use lowercase letters, digits, '_' or '-', "
            "starting with a letter"
        )
    module = name.replace("-", "_")
    if keyword.iskeyword(module):
        raise CliError(f"service name {name!r}: {module!r} is a Python keyword")
    files = {
        directory / f"{module}.py": _SERVICE.format(name=name),
        directory / f"test_{module}.py": _TEST.format(name=name, module=module),
    }
    existing = [str(p) for p in files if p.exists()]
    if existing and not force:
        names = " and ".join(existing)
        verb = "exists" if len(existing) == 1 else "exist"
        raise CliError(f"{names} {verb} already (pass --force to overwrite)")
    directory.mkdir(parents=True, exist_ok=True)
    for path, text in files.items():
        path.write_text(text)
    return list(files)
