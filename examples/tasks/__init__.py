"""JUST TASKS (seed 001): task management whose task aggregate is event-sourced, projected into a
board, and driven over HTTP. See :mod:`examples.tasks.app`."""
