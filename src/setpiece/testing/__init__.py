"""setpiece's pytest plugin: an ephemeral stack per test, assertions on what flowed, a fake for
HTTP calls. See ``docs/testing.md``.

Installed with setpiece, the plugin loads by itself (the ``pytest11`` entry point
``setpiece.testing``); ``pytest_plugins = ["setpiece.testing"]`` in a test module or conftest
loads it too. Fixtures: ``setpiece_stack``, ``clock``, ``setpiece_http``, ``setpiece_engine``,
``setpiece_urls``, ``setpiece_servers``.

::

    async def test_points(setpiece_stack):
        rt = await setpiece_stack(stack)
        await rt.publish(Event(type="order_paid", source="test", data={"total": 30}))
        event = await rt.expect({"type": ["points_awarded"]}, timeout=5)
"""

from __future__ import annotations

from setpiece.clock import VirtualClock
from setpiece.testing._engines import EngineUrls, Servers
from setpiece.testing._http import Call, FakeHttp

# pytest finds a plugin's hooks and fixtures by name on its module: these names are here for it
# (fixtures are used by name in tests, not imported; hence not in __all__).
from setpiece.testing._plugin import (  # noqa: F401
    _setpiece_namespaces,
    clock,
    pytest_addoption,
    pytest_configure,
    pytest_configure_node,
    pytest_pyfunc_call,
    pytest_unconfigure,
    setpiece_engine,
    setpiece_http,
    setpiece_servers,
    setpiece_stack,
    setpiece_urls,
)
from setpiece.testing._stacks import StackStarter

__all__ = ["Call", "EngineUrls", "FakeHttp", "Servers", "StackStarter", "VirtualClock"]
