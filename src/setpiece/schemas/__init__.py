"""Event schemas: declaring them, their compatibility rules, validation and the registry."""

from setpiece.schemas._compat import is_compatible

__all__ = ["is_compatible"]
