"""The ``setpiece`` command groups, one module each; ``setpiece.cli.app`` registers them.

Each module defines its typer commands beside the logic they drive and a ``register(app)``
that adds them to the root command. A group module imports only the shared helpers
(``_common``, ``_console``, ``_options``, ``_engines``, ``_help``) and the logic modules of
``setpiece.cli``: never the root, never another group.
"""
