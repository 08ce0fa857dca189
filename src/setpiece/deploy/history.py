"""The deployments an engine has had, numbered from 1, kept in the engine's own store.

Each ``setpiece apply`` (and each ``setpiece rollback``) that succeeds records one
:class:`Deployment` and makes it the current one, in one unit of work: the record under
``d:<number>`` and the ``head`` key (the current number) of the key-value namespace
:data:`NAMESPACE`. ``head`` is read with its version, so two applies racing on one engine cannot
both record the same number: the second fails with a ConflictError and is undone.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from setpiece.deploy.resources import Resources, canonical, digest
from setpiece.engine.contract import Engine, KVRead, KVWrite, UnitOfWork
from setpiece.errors import ConfigError, ConflictError

__all__ = ["NAMESPACE", "Deployment", "History"]

#: The key-value namespace holding the deployments (never a service's store).
NAMESPACE = "setpiece.deployments"
_HEAD = "head"
_PAGE = 500

Action = Literal["apply", "rollback"]


def _key(number: int) -> str:
    return f"d:{number:010d}"


@dataclass(frozen=True, slots=True)
class Deployment:
    """One recorded deployment.

    ``definition`` is the stack's canonical JSON description (see
    :func:`setpiece.deploy.describe`); ``resources`` the streams and groups it needs;
    ``by`` who applied it; ``at`` when (seconds since the epoch); ``action`` ``apply`` or
    ``rollback`` (then ``rollback_of`` is the number whose definition it re-applied).
    """

    number: int
    action: Action
    definition: Mapping[str, Any]
    at: float
    by: str
    rollback_of: int | None = None

    @property
    def resources(self) -> Resources:
        return Resources.from_json(self.definition["resources"])

    @property
    def stack(self) -> str:
        return str(self.definition.get("stack", "?"))

    @property
    def digest(self) -> str:
        return digest(self.definition)

    @property
    def versions(self) -> dict[str, str]:
        """``{service or workflow: version}`` as deployed (workflows as ``workflow:NAME``)."""
        out = {s["name"]: s["version"] for s in self.definition.get("services", ())}
        out.update({f"workflow:{w['name']}": w["version"]
                    for w in self.definition.get("workflows", ())})
        return out

    def as_json(self) -> dict[str, Any]:
        return {"number": self.number, "action": self.action, "at": self.at, "by": self.by,
                "rollback_of": self.rollback_of, "stack": self.stack, "digest": self.digest,
                "versions": self.versions, "definition": self.definition}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Deployment:
        try:
            return cls(int(data["number"]), data["action"], data["definition"],
                       float(data["at"]), str(data["by"]), data.get("rollback_of"))
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"a recorded deployment is malformed: {exc!r}") from None


class History:
    """The deployments recorded in ``engine``."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    async def _head(self) -> tuple[int, int]:
        """(current number or 0, the head key's version or 0)."""
        found = await self.engine.kv_get(NAMESPACE, [_HEAD])
        if _HEAD not in found:
            return 0, 0
        value, version = found[_HEAD]
        return int(value), version

    async def current(self) -> Deployment | None:
        """The current deployment (the last recorded), or None before the first."""
        number, _ = await self._head()
        return await self.get(number) if number else None

    async def get(self, number: int) -> Deployment:
        found = await self.engine.kv_get(NAMESPACE, [_key(number)])
        if _key(number) not in found:
            head, _ = await self._head()
            known = f"1..{head}" if head else "none yet"
            raise ConfigError(f"deployment {number} does not exist (deployments: {known})")
        return Deployment.from_json(json.loads(found[_key(number)][0]))

    async def list(self) -> list[Deployment]:
        """Every deployment, oldest first."""
        head, _ = await self._head()
        out: list[Deployment] = []
        for first in range(1, head + 1, _PAGE):
            keys = [_key(n) for n in range(first, min(head, first + _PAGE - 1) + 1)]
            found = await self.engine.kv_get(NAMESPACE, keys)
            out += [Deployment.from_json(json.loads(found[k][0])) for k in keys if k in found]
        return out

    async def expect(self) -> tuple[int, int]:
        """The head as read now (number, version): pass it to :meth:`record`."""
        return await self._head()

    async def record(
        self,
        definition: Mapping[str, Any],
        *,
        by: str,
        at: float,
        head: tuple[int, int],
        action: Action = "apply",
        rollback_of: int | None = None,
    ) -> Deployment:
        """Record a deployment as the current one, if the head is still ``head``.

        Raises ConflictError (recording nothing) when another deployment was recorded since.
        """
        number, version = head
        deployment = Deployment(number + 1, action, definition, at, by, rollback_of)
        work = UnitOfWork(
            reads=[KVRead(NAMESPACE, _HEAD, version)],
            writes=[KVWrite(NAMESPACE, _key(deployment.number), canonical(deployment.as_json())),
                    KVWrite(NAMESPACE, _HEAD, str(deployment.number).encode())],
        )
        try:
            await self.engine.commit(work)
        except ConflictError:
            raise ConflictError(
                f"another deployment was recorded on {self.engine.url} while this one was "
                "applied; run the plan again"
            ) from None
        return deployment
