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
from collections.abc import Callable
from typing import TYPE_CHECKING

from setpiece.errors import ConfigError
from setpiece.event import Event
from setpiece.runtime.shadow import compare
from setpiece.runtime.unit import Attempt, Batch
from setpiece.runtime.versions import (
    NAMESPACE,
    SAMPLES,
    Counts,
    Versions,
    VersionState,
    bounded,
    current_state,
    state_key,
    stats_prefix,
    totals,
)
from setpiece.signals import Drop

if TYPE_CHECKING:
    from setpiece.engine.contract import Engine
    from setpiece.rollout import Rollout
    from setpiece.runtime.extension import Action

__all__ = ["RolloutBatch", "Router", "key_share"]


def key_share(service: str, key: str) -> float:
    """Where ``key`` falls in [0, 1) for ``service``'s rollouts: a canary with share ``s``
    takes the keys below ``s``. Stable across processes, runs and machines (BLAKE2b of the
    service name and the key), so raising the share only ever adds keys."""
    digest = hashlib.blake2b(
        f"{service}\x1f{key}".encode("utf-8", "surrogatepass"), digest_size=8
    ).digest()
    return int.from_bytes(digest, "big") / 2.0**64


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
        self._state_key = state_key(rollout.service)
        self._stats = f"{stats_prefix(rollout.service, rollout.version)}{group}/"
        self._on_change = on_change
        self.action: Action = self._route

    async def batch(self, partition: int) -> RolloutBatch:
        """A new batch for ``partition``, under the rollout's current state (read now, and
        checked again when the batch commits)."""
        stats_key = f"{self._stats}{partition}"
        found = await self._engine.kv_get(NAMESPACE, [self._state_key, stats_key])
        state_hit, stats_hit = found.get(self._state_key), found.get(stats_key)
        state, _ = current_state(self.rollout, state_hit[0] if state_hit else None)
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
            total.samples = [bounded(s) for s in total.samples[-SAMPLES:]]
            batch.pending[(NAMESPACE, batch.stats_key)] = total.encode()

    async def committed(self, batch: Batch) -> None:
        """After the batch committed: abort if the candidate fails more than the policy allows."""
        assert isinstance(batch, RolloutBatch)
        policy = self.rollout.abort
        if policy is None or batch.state.status != "active" or not batch.counts.candidate:
            return
        total = await totals(self._engine, self.rollout)
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
        mismatch = compare(attempt, shadow, event)
        if mismatch is None:
            counts.matched += 1
        else:
            counts.samples = [mismatch]
        # The shadow's effects commit with the delivery (in their own namespace and stream).
        attempt.reads.update({k: v for k, v in shadow.reads.items() if k not in attempt.reads})
        attempt.writes.update(shadow.writes)
        attempt.appends.extend(shadow.appends)
