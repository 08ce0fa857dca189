"""Map and Parallel in the durable driver: starting branch threads, counting them done (with
Map's tolerated failures and concurrency limit), gathering their outcomes, and aborting threads
no longer wanted. Functions of one :class:`~setpiece.workflows._durable.Run`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from setpiece.workflows import _steps
from setpiece.workflows._definition import State
from setpiece.workflows._store import NS, Branches, ThreadRecord, decode_token, encode, token_key

if TYPE_CHECKING:
    from setpiece.workflows._durable import Run

__all__ = ["abort", "gather", "start", "thread_done"]


def _tolerated(br: Branches) -> bool:
    if br.kind != "Map":
        return False
    if br.tolerated_count is not None and br.failed <= br.tolerated_count:
        return True
    return (
        br.tolerated_pct is not None and br.total > 0
        and 100.0 * br.failed / br.total <= br.tolerated_pct
    )


async def start(
    run: Run, tid: int, th: ThreadRecord, st: State, action: _steps.RunBranches
) -> None:
    kind = action.kind
    total = len(action.branches)
    first = run.x.next_thread
    run.x.next_thread += total
    limit = action.max_concurrency if kind == "Map" else 0
    started = total if limit <= 0 else min(limit, total)
    run.event(kind + "StateStarted", {"name": st.name, "length": total})
    for i, br in enumerate(action.branches):
        cid = first + i
        child = ThreadRecord(
            path=[*th.path, (st.name, -1 if kind == "Map" else i)],
            state=br.machine.start_at, input=br.input, parent=tid,
            index=br.index if br.index is not None else i,
            phase="enter" if i < started else "queued",
        )
        run.threads[cid] = child
        run.touch(cid)
        if i < started:
            if kind == "Map":
                run.event("MapIterationStarted", {"name": st.name, "index": child.index})
            run.ready.append(cid)
    th.branches = Branches(kind, first, total, started, limit,
                           tolerated_count=action.tolerated_failure_count,
                           tolerated_pct=action.tolerated_failure_percentage)
    if total == 0:
        th.phase, th.outcome = "resume", ["branches"]
        run.ready.append(tid)
    else:
        th.phase, th.wait = "wait", "branches"

async def thread_done(run: Run, tid: int, th: ThreadRecord, result: _steps.BranchOutcome) -> None:
    if th.parent is None:
        await run.finish_root(result)
        return
    th.phase, th.ok, th.output = "done", result.ok, result.output
    th.error, th.cause, th.input, th.vars = result.error, result.cause, None, {}
    pid = th.parent
    parent = await run.thread(pid)
    if parent is None or parent.phase != "wait" or parent.branches is None:
        run.delete(tid)  # its parent stopped waiting (a sibling failed)
        return
    br = parent.branches
    run.touch(pid)
    if br.kind == "Map":
        run.event("MapIterationSucceeded" if result.ok else "MapIterationFailed",
                   {"name": parent.state, "index": th.index})
    br.done += 1
    if not result.ok:
        br.failed += 1
    if (not result.ok and not _tolerated(br)) or br.done == br.total:
        parent.phase, parent.outcome, parent.wait = "resume", ["branches"], None
        run.ready.append(pid)
    elif br.started < br.total:
        cid = br.first + br.started
        br.started += 1
        child = await run.thread(cid)
        if child is not None:
            child.phase = "enter"
            run.touch(cid)
            run.event("MapIterationStarted", {"name": parent.state, "index": child.index})
            run.ready.append(cid)

async def gather(run: Run, th: ThreadRecord, st: State) -> _steps.BranchesDone:
    br = th.branches
    th.branches = None
    if br is None:
        return _steps.BranchesDone((), 0)
    outcomes: list[_steps.BranchOutcome] = []
    for cid in range(br.first, br.first + br.total):
        child = await run.thread(cid)
        if child is None:
            continue
        if child.phase == "done":
            outcomes.append(
                _steps.BranchOutcome(child.ok, child.output, child.error, child.cause)
            )
        else:
            await abort(run, cid, child)
        run.delete(cid)
    ok = all(o.ok for o in outcomes)
    run.event(br.kind + ("StateSucceeded" if ok else "StateFailed"), {"name": st.name})
    return _steps.BranchesDone(tuple(outcomes), br.total)

async def abort(run: Run, tid: int, th: ThreadRecord) -> None:
    """Stop a thread that is no longer wanted, with its children; its token closes."""
    if th.phase == "wait" and th.wait == "token" and th.token:
        tkey = (NS, token_key(th.token))
        raw = await run.attempt.get(tkey)
        if raw is not None:
            rec = decode_token(raw)
            if rec.state == "open":
                rec.state = "closed"
                run.attempt.put(tkey, encode(rec))
    if th.branches is not None:
        br = th.branches
        for cid in range(br.first, br.first + br.total):
            child = await run.thread(cid)
            if child is not None:
                await abort(run, cid, child)
    run.delete(tid)
