"""A small stack with views, for the ``setpiece inspect`` test (``tests.views.views_app:stack``)."""

from __future__ import annotations

from setpiece import Stack, Stream
from setpiece.views import Aggregate, Join, Table, Tumbling

profiles = Stream("profiles", partitions=2)
orders = Stream("orders", partitions=2)
enriched = Stream("enriched", partitions=2)
table = Table("profile_table", profiles, key=lambda e: e.partitionkey)
stack = Stack("viewed", streams=[profiles, orders, enriched], views=[
    table,
    Join("enrich", orders, table, emit_to=enriched),
    Aggregate("per_customer", orders, key=lambda e: e.partitionkey, window=Tumbling(60),
              initial=lambda: 0, add=lambda acc, e: acc + 1, emit_to=enriched),
])
