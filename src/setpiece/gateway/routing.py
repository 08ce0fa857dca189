"""Version routing: which live version of a service serves a request (the weights are declared
with :class:`~setpiece.http.VersionRoutes`).

::

    Stack(..., routes=VersionRoutes({"notes": {"1": 90, "2": 10}}))    # 90 % primary, 10 % canary
    Stack(..., routes=VersionRoutes({"notes": {"1": 90, "2": 10}}, sticky=True))

In order: the ``x-setpiece-version`` header picks a version outright (a developer trying the
``dev`` version); else the weights of the versions that have live instances, chosen at random —
or, with ``sticky``, by a stable hash of the caller's subject, so one user stays on one version
across requests and gateways. A service without weights spreads evenly over its live versions.
A version weighted 0 takes traffic only through the header (drained); a live version missing from
the table, only when no weighted version is live.
"""

from __future__ import annotations

import random
import zlib
from collections.abc import Sequence
from typing import Any

from setpiece.http import VERSION_HEADER, VersionRoutes

__all__ = ["VERSION_HEADER", "VersionRoutes", "choose_version"]


def _unit_hash(text: str) -> float:
    """A stable number in [0, 1) for a text (the same in every process)."""
    return zlib.crc32(text.encode()) / 2**32


def choose_version(
    routes: VersionRoutes | None,
    service: str,
    live: Sequence[str],
    *,
    requested: str | None = None,
    subject: str | None = None,
    rng: Any = random,
) -> str | None:
    """The version to send a request to, among the ``live`` versions (sorted); None if none fits.

    ``requested`` is the version header (only that version, or None if it has no live instance).
    """
    if requested is not None:
        return requested if requested in live else None
    if not live:
        return None
    table = routes.weights.get(service) if routes is not None else None
    if table:
        pairs = [(v, table[v]) for v in live if table.get(v, 0) > 0]
        if not pairs:  # no weighted version is live: spread over those not weighted 0
            pairs = [(v, 1) for v in live if v not in table]
    else:
        pairs = [(v, 1) for v in live]
    if not pairs:
        return None  # only versions weighted 0 (drained) are live
    if len(pairs) == 1:
        return pairs[0][0]
    total = sum(w for _, w in pairs)
    if routes is not None and routes.sticky and subject is not None:
        point = _unit_hash(f"{service}\x00{subject}") * total
    else:
        point = rng.random() * total
    for version, weight in pairs:
        point -= weight
        if point < 0:
            return version
    return pairs[-1][0]
