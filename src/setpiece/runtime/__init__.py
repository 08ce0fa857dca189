"""The runtime: consumers, delivery with retries and dead letters, timers, publishing, and the
extension point through which the parts above it plug in.

``Runtime`` here is the runtime alone; ``setpiece.Runtime`` (what ``stack.start()`` returns) is
it with the gateway and durable workflows attached.
"""

from setpiece.runtime.config import RuntimeConfig
from setpiece.runtime.extension import (
    EndpointCall,
    Extension,
    HttpEndpoint,
    RawBody,
    StreamBody,
)
from setpiece.runtime.instrument import Instrumentation, RequestObservation
from setpiece.runtime.letters import DeadLetter
from setpiece.runtime.runtime import Runtime
from setpiece.runtime.scope import Scope
from setpiece.runtime.stores import StoreReader

__all__ = [
    "DeadLetter",
    "EndpointCall",
    "Extension",
    "HttpEndpoint",
    "Instrumentation",
    "RawBody",
    "RequestObservation",
    "Runtime",
    "RuntimeConfig",
    "Scope",
    "StoreReader",
    "StreamBody",
]
