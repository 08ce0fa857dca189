"""Event schemas: declare a JSON Schema per event type, version it under a compatibility rule,
and have every publish checked against it before anything is stored.

::

    from setpiece.schemas import Schema
    stack = Stack("shop", services=[...], schemas=[
        Schema("order_placed", OrderPlaced),              # a Struct, a pydantic model, a dataclass
        Schema("order_paid", {"type": "object", ...}, compatibility="FULL"),  # or a JSON Schema
    ])

:func:`is_compatible` compares two JSON Schema documents with the Confluent Schema Registry's
meanings. A running stack keeps its schemas in a registry in the engine, shared by every worker
(``rt.extension("schemas").registry``).
"""

from setpiece.schemas._compat import is_compatible
from setpiece.schemas.schema import Schema

__all__ = ["Schema", "is_compatible"]
