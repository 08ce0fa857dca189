"""Two versions of a service's event consumers in one consumer group (see :mod:`setpiece.rollout`).

A handler whose service has a :class:`~setpiece.Rollout` keeps its one consumer group; its
consumer gets a :class:`Router`, which picks the version of each delivery inside the group's one
ordered delivery per partition. So a key's events are never handled concurrently by two versions,
and a switch never reorders them:

* each batch reads the rollout's state (engine key-value, namespace ``setpiece:versions``) when
  it starts, routes every delivery of the batch by that state, and commits with that read: if a
  promote or an abort committed meanwhile, the commit conflicts and the batch runs again under
  the new state. A switch therefore takes effect between batches, in every worker at once;
* the batch's counts (deliveries and failures per version, shadow comparisons) are written in
  the same commit, one key per consumer group and partition, so they are exact, durable, and
  never double counted; after a commit the router sums them and aborts when the
  :class:`~setpiece.AbortPolicy` says so.

Canary deliveries the candidate fails are handled by the primary in the same delivery (the
candidate's effects are dropped first): a bad canary costs an attempt, never an event. A shadow
runs after the primary's successful attempt, on a copy of the event; its store is an overlay on
the primary's (reads fall through to the primary's committed values until the shadow writes the
key) in its own namespace, its events go to the stream ``setpiece.shadow.<service>``, and both
are compared with what the primary did in the same delivery.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import msgspec

from setpiece.context import ServiceStore, check_key, store_namespace
from setpiece.engine.contract import KVRead, KVWrite, StreamSpec, UnitOfWork
from setpiece.errors import ConfigError, ConflictError
from setpiece.event import Event
from setpiece.runtime.outgoing import encode_checked, prepare
from setpiece.runtime.stores import StoreReader
from setpiece.runtime.unit import Attempt, Batch
from setpiece.signals import Drop

if TYPE_CHECKING:
    from setpiece.engine.contract import Engine
    from setpiece.rollout import Rollout
    from setpiece.runtime.extension import Action

__all__ = [
    "NAMESPACE", "SHADOW_RETENTION", "Router", "ShadowEvent", "VersionReport", "VersionState",
    "Versions", "key_share", "shadow_namespace", "shadow_stream",
]

NAMESPACE = "setpiece:versions"
SHADOW_RETENTION = 7 * 24 * 3600.0  # seconds the shadow stream keeps a shadow's events
_SAMPLES = 5  # mismatches kept per consumer group and partition (the most recent)
_SAMPLE_BYTES = 8192  # a mismatch larger than this as JSON is kept without its two sides
_TOMBSTONE = b'{"setpiece.shadow":"deleted"}'  # a key the shadow deleted (hides the primary's)
_encode = msgspec.json.encode
_decode = msgspec.json.decode


def key_share(service: str, key: str) -> float:
    """Where ``key`` falls in [0, 1) for ``service``'s rollouts: a canary with share ``s``
    takes the keys below ``s``. Stable across processes, runs and machines (BLAKE2b of the
    service name and the key), so raising the share only ever adds keys."""
    digest = hashlib.blake2b(
        f"{service}\x1f{key}".encode("utf-8", "surrogatepass"), digest_size=8
    ).digest()
    return int.from_bytes(digest, "big") / 2.0**64


def shadow_namespace(service: str, tenant: str | None = None) -> str:
    """The engine namespace of a shadow version's store."""
    return "shadow:" + store_namespace(service, tenant)


def shadow_stream(service: str) -> str:
    """The stream that holds what a shadow version of ``service`` emitted (never a bus's)."""
    return f"setpiece.shadow.{service}"


def _state_key(service: str) -> str:
    return f"state/{service}"


def _stats_prefix(service: str, version: str) -> str:
    return f"stats/{service}/{version}/"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# -- the durable state ------------------------------------------------------------------------


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


def _current(rollout: Rollout, raw: bytes | None) -> tuple[VersionState, bool]:
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
        key = _state_key(rollout.service)
        hit = (await self._engine.kv_get(NAMESPACE, [key])).get(key)
        state, stored = _current(rollout, hit[0] if hit else None)
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
                reads=[KVRead(NAMESPACE, _state_key(service), version)],
                writes=[KVWrite(NAMESPACE, _state_key(service), _encode(new))],
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
        total = await _totals(self._engine, rollout)
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


async def _totals(engine: Engine, rollout: Rollout) -> Counts:
    total = Counts()
    rows = await engine.kv_scan(
        NAMESPACE, _stats_prefix(rollout.service, rollout.version), _MAX_STATS_KEYS
    )
    for _, raw in rows:
        total.add(Counts.decode(raw))
    return total


class ShadowStoreReader(StoreReader):
    """A shadow's store read from outside: keys it deleted read as absent."""

    async def get(self, key: str, default: Any = None) -> Any:
        found = await self._engine.kv_get(self.namespace, [check_key(key)])
        if key not in found or found[key][0] == _TOMBSTONE:
            return default
        return _decode(found[key][0])

    async def items(self, prefix: str = "", limit: int = 1000) -> list[tuple[str, Any]]:
        rows = await self._engine.kv_scan(self.namespace, prefix, limit)
        return [(k, _decode(v)) for k, v in rows if v != _TOMBSTONE]


class ShadowStore(ServiceStore):
    """A shadow's store in a delivery: its own namespace over the primary's committed values."""

    __slots__ = ("_primary",)

    def __init__(self, attempt: Attempt, namespace: str, primary: str) -> None:
        super().__init__(attempt, namespace)
        self._primary = primary

    async def get(self, key: str, default: Any = None) -> Any:
        check_key(key)
        raw = await self._attempt.get((self.namespace, key))
        if raw is None:
            raw = await self._attempt.get((self._primary, key))
        elif raw == _TOMBSTONE:
            raw = None
        return default if raw is None else _decode(raw)

    async def delete(self, key: str) -> None:
        check_key(key)
        self._attempt.put((self.namespace, key), _TOMBSTONE)


def shadow_store(service: str) -> Callable[[Attempt, Event], ServiceStore]:
    """Makes the store a shadow version of ``service`` sees in each attempt."""

    def make(attempt: Attempt, event: Event) -> ServiceStore:
        return ShadowStore(attempt, shadow_namespace(service, event.tenant),
                           store_namespace(service, event.tenant))

    return make


# -- routing inside a consumer ----------------------------------------------------------------


Outcomes = dict[tuple[str, str, str | None], Counts]


class RolloutBatch(Batch):
    """A batch of a versioned consumer: the state it runs under, and what each delivery
    counted (by event: a delivery run again after losing an in-batch race replaces its count)."""

    def __init__(self, engine: Engine, state: VersionState, stats_key: str, old: Counts) -> None:
        super().__init__(engine)
        self.state = state
        self.stats_key = stats_key
        self.old = old
        self.outcomes: Outcomes = {}
        self.counts = Counts()  # the sum of the outcomes, once the batch is finished

    def outcome(self, event: Event, number: int) -> Counts:
        """The counts of ``event``'s delivery: fresh on a first attempt."""
        key = (event.id, event.source, event.tenant)
        found = self.outcomes.get(key)
        if number == 1 or found is None:
            self.outcomes[key] = found = Counts()
        return found


class Router:
    """Picks the version of each delivery of one handler's consumer (see the module doc).

    ``primary`` and ``candidate`` are the two versions' actions; ``shadow`` is the
    candidate's as a shadow (it sees the shadow store and emits to the shadow stream).
    """

    def __init__(
        self,
        engine: Engine,
        rollout: Rollout,
        *,
        versions: Versions,
        group: str,
        primary: Action,
        candidate: Action,
        shadow: Action | None = None,
        on_change: Callable[[], None] = lambda: None,
    ) -> None:
        self._engine = engine
        self._versions = versions
        self.rollout = rollout
        self.group = group
        self._primary = primary
        self._candidate = candidate
        self._shadow = candidate if shadow is None else shadow
        self._service = rollout.service
        self._state_key = _state_key(rollout.service)
        self._stats = f"{_stats_prefix(rollout.service, rollout.version)}{group}/"
        self._on_change = on_change
        self.action: Action = self._route

    async def batch(self, partition: int) -> RolloutBatch:
        """A new batch for ``partition``, under the rollout's current state (read now, and
        checked again when the batch commits)."""
        stats_key = f"{self._stats}{partition}"
        found = await self._engine.kv_get(NAMESPACE, [self._state_key, stats_key])
        state_hit, stats_hit = found.get(self._state_key), found.get(stats_key)
        state, _ = _current(self.rollout, state_hit[0] if state_hit else None)
        batch = RolloutBatch(self._engine, state, stats_key,
                             Counts.decode(stats_hit[0] if stats_hit else None))
        for key, hit in ((self._state_key, state_hit), (stats_key, stats_hit)):
            batch.versions[(NAMESPACE, key)] = hit[1] if hit else 0
            batch.committed_values[(NAMESPACE, key)] = hit[0] if hit else None
        return batch

    def finish(self, batch: Batch) -> None:
        """Add the batch's counts to its unit of work (before it commits)."""
        assert isinstance(batch, RolloutBatch)
        for outcome in batch.outcomes.values():
            batch.counts.add(outcome)
        if batch.counts.any():
            total = Counts()
            total.add(batch.old)
            total.add(batch.counts)
            total.samples = [_bounded(s) for s in total.samples[-_SAMPLES:]]
            batch.pending[(NAMESPACE, batch.stats_key)] = total.encode()

    async def committed(self, batch: Batch) -> None:
        """After the batch committed: abort if the candidate fails more than the policy allows."""
        assert isinstance(batch, RolloutBatch)
        policy = self.rollout.abort
        if policy is None or batch.state.status != "active" or not batch.counts.candidate:
            return
        total = await _totals(self._engine, self.rollout)
        if total.candidate < policy.min_deliveries:
            return
        candidate = total.candidate_failed / total.candidate
        primary = total.primary_failed / total.primary if total.primary else 0.0
        if candidate - primary <= policy.margin:
            return
        reason = (f"automatic: the candidate failed {candidate:.1%} of {total.candidate} "
                  f"deliveries, the primary {primary:.1%} of {total.primary} (margin "
                  f"{policy.margin:.1%})")
        try:
            await self._versions.abort(self._service, reason)
        except ConfigError:
            return  # promoted or aborted meanwhile
        self._on_change()

    async def _route(self, event: Event, attempt: Attempt, number: int) -> None:
        batch = attempt.batch
        assert isinstance(batch, RolloutBatch)
        state = batch.state
        status = state.status
        if status == "aborted":
            await self._primary(event, attempt, number)
        elif status == "promoted":
            await self._candidate(event, attempt, number)
        elif state.mode == "shadow":
            await self._shadowed(event, attempt, number, batch.outcome(event, number))
        elif number == 1 and key_share(
            self._service, event.partitionkey if event.partitionkey is not None else event.id
        ) < state.share:
            await self._canary(event, attempt, batch.outcome(event, 1))
        else:  # a primary key, or a retry (the candidate failed the first attempt)
            await self._counted(event, attempt, number, batch.outcome(event, number))

    async def _counted(self, event: Event, attempt: Attempt, number: int, counts: Counts) -> None:
        if number != 1:
            await self._primary(event, attempt, number)
            return
        counts.primary += 1
        try:
            await self._primary(event, attempt, 1)
        except Drop:
            raise
        except BaseException:
            counts.primary_failed += 1
            raise

    async def _canary(self, event: Event, attempt: Attempt, counts: Counts) -> None:
        counts.candidate += 1
        try:
            await self._candidate(event, attempt, 1)
            return
        except Drop:
            raise
        except Exception:
            counts.candidate_failed += 1
        except BaseException:  # its time limit ran out (the retry goes to the primary)
            counts.candidate_failed += 1
            raise
        # The candidate failed: nothing it did survives, and the primary takes the delivery
        # (its own retries and dead letter apply from here).
        attempt.reset()
        await self._primary(event, attempt, 1)

    async def _shadowed(
        self, event: Event, attempt: Attempt, number: int, counts: Counts
    ) -> None:
        await self._counted(event, attempt, number, counts)
        shadow = Attempt(attempt.batch)
        counts.candidate += 1
        try:
            await self._shadow(event, shadow, number)
        except Exception:  # a Drop too: the shadow did not do what the primary did
            counts.candidate_failed += 1
            return
        counts.compared += 1
        primary = _effects(attempt, "svc:", self._decode_primary)
        mirror = _effects(shadow, "shadow:svc:", self._decode_shadow)
        if primary == mirror:
            counts.matched += 1
        else:
            counts.samples = [{
                "event": event.id, "type": event.type, "key": event.partitionkey,
                "primary": _shown(primary), "shadow": _shown(mirror),
            }]
        # The shadow's effects commit with the delivery (in their own namespace and stream).
        attempt.reads.update({k: v for k, v in shadow.reads.items() if k not in attempt.reads})
        attempt.writes.update(shadow.writes)
        attempt.appends.extend(shadow.appends)

    def _decode_primary(self, stream: str, value: bytes) -> Any:
        if stream.startswith("setpiece."):
            return None  # not an emitted event (a workflow's record)
        return _comparable(stream, _decode(value))

    def _decode_shadow(self, stream: str, value: bytes) -> Any:
        d = _decode(value)
        return _comparable(d["target"], d["event"])


_COMPARED = ("type", "source", "subject", "dataschema", "partitionkey", "tenant", "data")


def _comparable(target: str, event: dict[str, Any]) -> Any:
    return [target, *(event.get(name) for name in _COMPARED)]


def _effects(
    attempt: Attempt, prefix: str, decode: Callable[[str, bytes], Any]
) -> tuple[dict[str, Any], list[Any]]:
    """An attempt's store writes (by tenant and key) and emitted events, comparable."""
    writes: dict[str, Any] = {}
    for (namespace, key), value in attempt.writes.items():
        if namespace.startswith(prefix):
            tenant = namespace[len(prefix):].partition("@")[2]
            shown = None if value is None or value == _TOMBSTONE else _decode(value)
            writes[f"{tenant}/{key}" if tenant else key] = shown
    events = [e for e in (decode(s, v) for s, _, v in attempt.appends) if e is not None]
    return writes, events


def _bounded(sample: Any) -> Any:
    """A mismatch as kept: without both sides when they are large."""
    if len(_encode(sample)) <= _SAMPLE_BYTES:
        return sample
    return {"event": sample["event"], "type": sample["type"], "key": sample["key"],
            "primary": "(too large to keep)", "shadow": "(too large to keep)"}


def _shown(effects: tuple[dict[str, Any], list[Any]]) -> dict[str, Any]:
    writes, events = effects
    return {
        "store": writes,
        "events": [{"target": e[0], **dict(zip(_COMPARED, e[1:], strict=True))} for e in events],
    }


def shadow_emit(
    service: str,
    target_stream: Callable[[str | None, str | None], str],
    max_bytes: int,
) -> Callable[..., None]:
    """The emit of a shadow version: each event, checked as the primary's would be, goes to the
    shadow stream with the stream or bus it was meant for."""
    stream = shadow_stream(service)

    def emit(
        attempt: Attempt, event: Event, bus: str | None, stream_name: str | None, *,
        cause: Event, service: str,
    ) -> None:
        out = prepare(event, cause=cause, service=service)
        target = target_stream(bus, stream_name)
        data = encode_checked(out, max_bytes)
        record = {"target": target, "cause": cause.id, "event": msgspec.Raw(data),
                  "time": time.time()}
        attempt.emit(stream, out.partitionkey, _encode(record))

    return emit
