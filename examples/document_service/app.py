"""Seed 001, slide 32: "Kafka Streams for materialized views": the document service joins its
document stream against a table of the profile topic, and answers from the materialized view;
it needs no database of its own, no copy of the profiles to keep in sync and no remote call to
the profile service.

::

    profile service  --ProfileUpdated-->  [profiles]  --table--> profile_table
    document service --DocumentCreated--> [documents] --join profile_table-->
        [documents_enriched] --table--> document_view <-- GET /documents/{id}

Try it: ``setpiece dev examples.document_service.app:stack``, then
``curl -X PUT localhost:8000/profiles/ann -d '{"name": "Ann", "team": "ops"}'``,
``curl -X POST localhost:8000/documents -d '{"id": "d1", "title": "Runbook", "author": "ann"}'``
and ``curl localhost:8000/documents/d1``.
"""

from __future__ import annotations

from typing import Any

import msgspec

from setpiece import Context, Event, HTTPError, Response, Service, Stack, Stream
from setpiece.views import Join, Table

PROFILE_UPDATED = "ProfileUpdated"
DOCUMENT_CREATED = "DocumentCreated"

# The author's profile id is the documents' partition key, as it is the profiles': the join is
# co-partitioned (both streams have the same partitions).
profiles = Stream("profiles", partitions=4)
documents = Stream("documents", partitions=4)
documents_enriched = Stream("documents_enriched", partitions=4)


class Profile(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    name: str
    team: str


class Document(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    id: str
    title: str
    author: str


profile_service = Service("profile")


@profile_service.put("/profiles/{profile_id}")
async def update_profile(profile_id: str, body: Profile, ctx: Context) -> Response:
    """The profile service owns profiles; others learn of them from ``ProfileUpdated``."""
    await ctx.publish(Event(type=PROFILE_UPDATED, partitionkey=profile_id,
                            data=msgspec.to_builtins(body)), stream="profiles")
    return Response({"accepted": True}, status=202)


document_service = Service("document")


@document_service.post("/documents")
async def create_document(body: Document, ctx: Context) -> Response:
    await ctx.publish(Event(type=DOCUMENT_CREATED, partitionkey=body.author,
                            data=msgspec.to_builtins(body)), stream="documents")
    return Response({"accepted": True}, status=202)


@document_service.get("/documents/{document_id}")
async def get_document(document_id: str, ctx: Context) -> dict[str, Any]:
    """A document with its author's profile, from the materialized view: no remote call."""
    found: dict[str, Any] | None = await ctx.view("document_view").get(document_id)
    if found is None:
        raise HTTPError(404, f"no document {document_id!r}")
    return found


def with_author(event: Event, profile: Any) -> dict[str, Any]:
    return {**event.data, "author_profile": profile}


profile_table = Table("profile_table", profiles, key=lambda e: e.partitionkey)
documents_with_author = Join("documents_with_author", documents, profile_table, how="left",
                             combine=with_author, emit_to=documents_enriched)
document_view = Table("document_view", documents_enriched, key=lambda e: e.data["id"])

stack = Stack(
    "documents",
    services=[profile_service, document_service],
    streams=[profiles, documents, documents_enriched],
    views=[profile_table, documents_with_author, document_view],
)
