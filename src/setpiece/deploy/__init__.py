"""Deployments: ``setpiece apply`` records each one in the engine, undoes a failed one, and
``setpiece rollback`` goes back to an earlier one.

* :mod:`~setpiece.deploy.resources` — what a deployment needs of an engine (streams, groups)
  and the stack's definition, a canonical JSON description of everything it declares;
* :mod:`~setpiece.deploy.plan` — the change set from what the engine holds to what is needed;
* :mod:`~setpiece.deploy.steps` — the change set as steps, each with its undo;
* :mod:`~setpiece.deploy.history` — the numbered deployments, kept in the engine's store;
* :mod:`~setpiece.deploy.apply` — the whole: check, apply or undo, record.

Nothing here starts a runtime: it needs an engine (the contract of :mod:`setpiece.engine`) and
the declarations. The ``setpiece`` command turns a stack into :class:`Resources` (the runtime
knows which consumer groups its handlers use) and calls :func:`deploy`.
"""

from __future__ import annotations

from setpiece.deploy.apply import check, deploy
from setpiece.deploy.history import NAMESPACE, Deployment, History
from setpiece.deploy.plan import Change, ChangeSet, additions, diff
from setpiece.deploy.resources import GroupSpec, Resources, describe, digest
from setpiece.deploy.steps import Step, run_steps, steps_for

__all__ = [
    "NAMESPACE",
    "Change",
    "ChangeSet",
    "Deployment",
    "GroupSpec",
    "History",
    "Resources",
    "Step",
    "additions",
    "check",
    "deploy",
    "describe",
    "diff",
    "digest",
    "run_steps",
    "steps_for",
]
