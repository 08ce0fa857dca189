"""The state of a stack's rollouts in the engine, their counts, and changing them.

Each rollout has one state key (``state/<service>`` in the key-value namespace
``setpiece:versions``: share, active / promoted / aborted) and one counts key per consumer group
and partition (``stats/<service>/<candidate version>/<group>/<partition>``: deliveries and
failures per version, shadow comparisons), written by the batches of
:mod:`setpiece.runtime.rollouts`. :class:`Versions` reads and changes them: it is ``rt.versions``
and what ``setpiece version`` uses.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import msgspec

from setpiece.engine.contract import KVRead, KVWrite, StreamSpec, UnitOfWork
from setpiece.errors import ConfigError, ConflictError
from setpiece.event import Event
from setpiece.runtime.shadow import (
    SHADOW_RETENTION,
    ShadowStoreReader,
    shadow_namespace,
    shadow_stream,
)

if TYPE_CHECKING:
    from setpiece.engine.contract import Engine
    from setpiece.rollout import Rollout

__all__ = [
    "NAMESPACE", "SAMPLES", "Counts", "ShadowEvent", "VersionReport", "VersionState", "Versions",
    "bounded", "current_state", "state_key", "stats_prefix", "totals",
]

NAMESPACE = "setpiece:versions"
SAMPLES = 5  # mismatches kept per consumer group and partition (the most recent)
_SAMPLE_BYTES = 8192  # a mismatch larger than this as JSON is kept without its two sides
_encode = msgspec.json.encode
_decode = msgspec.json.decode


def state_key(service: str) -> str:
    return f"state/{service}"


def stats_prefix(service: str, version: str) -> str:
    return f"stats/{service}/{version}/"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class VersionState(msgspec.Struct, frozen=True):
    """A rollout's state as the engine holds it (``rt.versions.state(service)``).

    ``status``: ``"active"`` (canary or shadow running), ``"promoted"`` (the candidate takes
    every delivery) or ``"aborted"`` (the primary takes every delivery). ``share``: the canary's
    current share of keys. ``declared``: the share the stack declared when this state was set.
    """

    service: str
    candidate: str
    mode: str
    status: str
    share: float
    declared: float
    reason: str | None = None
    changed: str = ""


def _fresh(rollout: Rollout) -> VersionState:
    share = rollout.share if rollout.share is not None else 0.0
    return VersionState(rollout.service, rollout.version, rollout.mode, "active", share, share,
                        "declared", _now())


def current_state(rollout: Rollout, raw: bytes | None) -> tuple[VersionState, bool]:
    """The state that applies to ``rollout``, and whether it is the stored one (not when the
    stored state is missing, or belongs to another candidate or mode: a new rollout starts
    afresh)."""
    if raw is not None:
        state = msgspec.json.decode(raw, type=VersionState)
        if state.candidate == rollout.version and state.mode == rollout.mode:
            return state, True
    return _fresh(rollout), False


@dataclass(slots=True)
class Counts:
    """Deliveries and failures per version, and shadow comparisons (one key's worth)."""

    primary: int = 0
    primary_failed: int = 0
    candidate: int = 0
    candidate_failed: int = 0
    compared: int = 0
    matched: int = 0
    samples: list[Any] = field(default_factory=list)

    def add(self, other: Counts) -> None:
        self.primary += other.primary
        self.primary_failed += other.primary_failed
        self.candidate += other.candidate
        self.candidate_failed += other.candidate_failed
        self.compared += other.compared
        self.matched += other.matched
        self.samples.extend(other.samples)

    def any(self) -> bool:
        return bool(self.primary or self.candidate or self.compared)

    def encode(self) -> bytes:
        return _encode({
            "p": [self.primary, self.primary_failed],
            "c": [self.candidate, self.candidate_failed],
            "cmp": [self.compared, self.matched],
            "samples": self.samples,
        })

    @classmethod
    def decode(cls, raw: bytes | None) -> Counts:
        if raw is None:
            return cls()
        d = _decode(raw)
        return cls(d["p"][0], d["p"][1], d["c"][0], d["c"][1], d["cmp"][0], d["cmp"][1],
                   list(d.get("samples", ())))


@dataclass(frozen=True, slots=True)
class VersionReport:
    """A rollout's state and counts, summed over every worker (``rt.versions.report``).

    ``mismatches``: the most recent shadow deliveries whose effects differed from the
    primary's (``{"event", "type", "key", "primary", "shadow"}``), a few per partition.
    """

    state: VersionState
    primary_deliveries: int
    primary_failures: int
    candidate_deliveries: int
    candidate_failures: int
    compared: int
    matched: int
    mismatches: list[Any]

    @property
    def mismatched(self) -> int:
        return self.compared - self.matched

    def failure_rate(self, version: str) -> float:
        """The failure rate of ``"primary"`` or ``"candidate"`` (0 before any delivery)."""
        if version == "primary":
            n, f = self.primary_deliveries, self.primary_failures
        elif version == "candidate":
            n, f = self.candidate_deliveries, self.candidate_failures
        else:
            raise ValueError(f"version: 'primary' or 'candidate', not {version!r}")
        return f / n if n else 0.0

    def to_dict(self) -> dict[str, Any]:
        """As JSON data; the candidate's version is ``version``, its counts ``candidate``."""
        s = self.state
        return {
            "service": s.service, "version": s.candidate, "mode": s.mode, "status": s.status,
            "share": s.share, "declared": s.declared, "reason": s.reason, "changed": s.changed,
            "primary": {"deliveries": self.primary_deliveries, "failures": self.primary_failures},
            "candidate": {"deliveries": self.candidate_deliveries,
                          "failures": self.candidate_failures},
            "shadow": {"compared": self.compared, "matched": self.matched,
                       "mismatched": self.mismatched, "mismatches": self.mismatches},
        }


@dataclass(frozen=True, slots=True)
class ShadowEvent:
    """An event a shadow version emitted: where it would have gone, and what caused it."""

    target: str
    cause: str
    event: Event


class Versions:
    """The rollouts of a stack on an engine: their state, reports, and promote / abort.

    ``rt.versions`` in a runtime; the ``setpiece version`` command uses one directly.
    """

    def __init__(self, engine: Engine, rollouts: Mapping[str, Rollout]) -> None:
        self._engine = engine
        self._rollouts = rollouts

    def _rollout(self, service: str) -> Rollout:
        rollout = self._rollouts.get(service)
        if rollout is None:
            raise ConfigError(f"service {service!r} has no rollout in this stack "
                              f"(rollouts: {sorted(self._rollouts) or 'none'})")
        return rollout

    @property
    def services(self) -> list[str]:
        """The services that have a rollout."""
        return sorted(self._rollouts)

    def stream_specs(self) -> list[StreamSpec]:
        """The shadow streams the stack's shadow rollouts need."""
        return [StreamSpec(shadow_stream(r.service), 1, SHADOW_RETENTION)
                for r in self._rollouts.values() if r.mode == "shadow"]

    async def _read(self, rollout: Rollout) -> tuple[VersionState, int, bool]:
        """(state, version of the stored key, whether the stored state applies)."""
        key = state_key(rollout.service)
        hit = (await self._engine.kv_get(NAMESPACE, [key])).get(key)
        state, stored = current_state(rollout, hit[0] if hit else None)
        return state, hit[1] if hit else 0, stored

    async def _change(
        self, service: str, change: Callable[[VersionState], VersionState | None]
    ) -> VersionState:
        """Apply ``change`` to the stored state by compare-and-set (None: leave it)."""
        rollout = self._rollout(service)
        while True:
            state, version, stored = await self._read(rollout)
            new = change(state)
            if new is None:
                if stored:
                    return state
                new = state  # first use of this rollout: record its state
            unit = UnitOfWork(
                reads=[KVRead(NAMESPACE, state_key(service), version)],
                writes=[KVWrite(NAMESPACE, state_key(service), _encode(new))],
            )
            try:
                await self._engine.commit(unit)
            except ConflictError:
                continue  # changed meanwhile (another worker, the CLI): decide again
            return new

    async def ensure(self) -> None:
        """Record each declared rollout's state, fresh when it is new; a changed declared
        share replaces the current share of a rollout still active."""

        def declared(rollout: Rollout) -> Callable[[VersionState], VersionState | None]:
            def change(state: VersionState) -> VersionState | None:
                share = rollout.share if rollout.share is not None else 0.0
                if state.status == "active" and state.declared != share:
                    return msgspec.structs.replace(state, share=share, declared=share,
                                                   reason="declared", changed=_now())
                return None
            return change

        for rollout in self._rollouts.values():
            await self._change(rollout.service, declared(rollout))

    async def state(self, service: str) -> VersionState:
        """The current state of ``service``'s rollout."""
        return (await self._read(self._rollout(service)))[0]

    async def promote(self, service: str, reason: str = "promoted by hand") -> VersionState:
        """Send every delivery to the candidate from the next batch on."""
        return await self._set(service, "promoted", reason)

    async def abort(self, service: str, reason: str = "aborted by hand") -> VersionState:
        """Send every delivery to the primary from the next batch on (a shadow stops)."""
        return await self._set(service, "aborted", reason)

    async def set_share(self, service: str, share: float) -> VersionState:
        """Change an active canary's share of keys (ConfigError otherwise)."""
        rollout = self._rollout(service)
        if rollout.mode != "canary":
            raise ConfigError(f"service {service!r}: its rollout is a shadow; it has no share")
        if isinstance(share, bool) or not isinstance(share, int | float) or not 0 <= share <= 1:
            raise ConfigError(f"share: must be in [0, 1], got {share!r}")

        def change(state: VersionState) -> VersionState:
            if state.status != "active":
                raise ConfigError(f"service {service!r}: the rollout is {state.status}; "
                                  "its share no longer applies")
            return msgspec.structs.replace(state, share=float(share), reason="share set",
                                           changed=_now())

        return await self._change(service, change)

    async def _set(self, service: str, status: str, reason: str) -> VersionState:
        def change(state: VersionState) -> VersionState | None:
            if state.status == status:
                return None
            if state.status != "active":
                raise ConfigError(f"service {service!r}: the rollout of version "
                                  f"{state.candidate!r} is already {state.status}")
            return msgspec.structs.replace(state, status=status, reason=reason, changed=_now())

        return await self._change(service, change)

    async def report(self, service: str) -> VersionReport:
        """The state of ``service``'s rollout and its counts, summed over every worker."""
        rollout = self._rollout(service)
        state = await self.state(service)
        total = await totals(self._engine, rollout)
        return VersionReport(state, total.primary, total.primary_failed, total.candidate,
                             total.candidate_failed, total.compared, total.matched,
                             total.samples)

    def shadow_store(self, service: str, *, tenant: str | None = None) -> ShadowStoreReader:
        """What a shadow version of ``service`` wrote to its store (committed)."""
        self._rollout(service)
        return ShadowStoreReader(self._engine, shadow_namespace(service, tenant))

    async def shadow_events(self, service: str, limit: int = 1000) -> list[ShadowEvent]:
        """The events a shadow version of ``service`` emitted, oldest first."""
        rollout = self._rollout(service)
        if rollout.mode != "shadow":
            return []
        stream = shadow_stream(service)
        if stream not in {s.name for s in await self._engine.streams()}:
            return []
        start = (await self._engine.start_offsets(stream))[0]
        out: list[ShadowEvent] = []
        for record in await self._engine.read(stream, 0, start, limit):
            d = _decode(record.value)
            out.append(ShadowEvent(d["target"], d["cause"], Event.from_dict(d["event"])))
        return out


_MAX_STATS_KEYS = 1_000_000  # one key per handler and partition of a rollout


async def totals(engine: Engine, rollout: Rollout) -> Counts:
    """The counts of ``rollout``'s candidate, summed over every consumer group and partition."""
    total = Counts()
    rows = await engine.kv_scan(
        NAMESPACE, stats_prefix(rollout.service, rollout.version), _MAX_STATS_KEYS
    )
    for _, raw in rows:
        total.add(Counts.decode(raw))
    return total


def bounded(sample: Any) -> Any:
    """A mismatch as kept: without both sides when they are large."""
    if len(_encode(sample)) <= _SAMPLE_BYTES:
        return sample
    return {"event": sample["event"], "type": sample["type"], "key": sample["key"],
            "primary": "(too large to keep)", "shadow": "(too large to keep)"}
