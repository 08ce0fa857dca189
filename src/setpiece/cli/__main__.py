"""``python -m setpiece.cli``: the same as the ``setpiece`` command."""

from setpiece.cli import main

main()
