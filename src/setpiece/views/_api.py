"""What a running stack offers for views: ``rt.view(name)``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from setpiece.errors import ConfigError
from setpiece.views._extension import EXTENSION, Views
from setpiece.views._state import JoinedReader, ViewReader

__all__ = ["ViewMethods"]


class ViewMethods:
    """Mixed into the runtime a stack starts (``setpiece._assembly.Runtime``)."""

    # the runtime's, which these methods are mixed into
    has_extension: Callable[[str], bool]
    extension: Callable[[str], Any]

    def view(self, name: str, *, tenant: str | None = None) -> ViewReader | JoinedReader:
        """Read view ``name``'s committed state: ``get``, ``items``, ``range``, ``windows``
        (the rows of ``tenant``: those of events with that tenant; without one, of events
        without a tenant).

        Raises ConfigError when the stack declares no view of that name."""
        if not self.has_extension(EXTENSION):
            raise ConfigError(f"the stack has no view {name!r} (it declares no views)")
        views: Views = self.extension(EXTENSION)
        return views.reader(name, tenant)
