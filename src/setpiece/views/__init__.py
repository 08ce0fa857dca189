"""Views: tables, joins and windowed aggregates materialised from streams, exactly once.

::

    from setpiece.views import Table, Aggregate, Tumbling, Hopping, Sliding, Session

See ``docs/views.md``.
"""

from __future__ import annotations

from setpiece.errors import ViewError
from setpiece.views.declarations import (
    Aggregate,
    Hopping,
    Join,
    Session,
    Sliding,
    StreamJoin,
    Table,
    TableJoin,
    Tumbling,
)

__all__ = [
    "Aggregate", "Hopping", "Join", "Session", "Sliding", "StreamJoin", "Table", "TableJoin",
    "Tumbling", "ViewError",
]
