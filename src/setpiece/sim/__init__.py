"""The simulator: an architecture at large scale, in simulated time, with chaos (issue 17).

::

    from setpiece.sim import SimConfig, load_spigo, simulate

    result = simulate(load_spigo("netflixoss_arch.json", scale=10), SimConfig(duration=30))
    result["services"]["homepage"]["p99_ms"]

A model comes from a Spigo architecture file (:func:`load_spigo`) or from a setpiece ``Stack``
and its cost model (:func:`from_stack`). Nothing in setpiece imports this package but the
command line (``setpiece sim``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from setpiece.sim.chaos import ChaosEvent, load_chaos, parse_chaos
from setpiece.sim.config import Discovery, Network, SimConfig
from setpiece.sim.engine import Simulation
from setpiece.sim.model import Autoscale, Call, Cost, Model, ServiceSpec
from setpiece.sim.output import graph, otlp, report, zipkin
from setpiece.sim.spigo import from_spigo, load_spigo

__all__ = [
    "Autoscale", "Call", "ChaosEvent", "Cost", "Discovery", "Model", "Network", "ServiceSpec",
    "SimConfig", "Simulation", "from_spigo", "graph", "load_chaos", "load_spigo", "otlp",
    "parse_chaos", "report", "simulate", "zipkin",
]


def simulate(model: Model, config: SimConfig | None = None,
             progress: Callable[[float], None] | None = None) -> dict[str, Any]:
    """Run ``model`` and return :func:`report` of the run."""
    sim = Simulation(model, config)
    sim.run(progress)
    return report(sim)
