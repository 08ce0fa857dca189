"""The event-sourcing benchmark's own code, run small: its workloads do what they claim (each
checks the final state itself). No timing is checked here."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from benchmarks import sourcing


def test_the_command_workloads_and_the_load_run_small(run: Any, tmp_path: Path) -> None:
    assert run(sourcing.setpiece_commands(str(tmp_path / "a.db"), 20, 3, 7)) > 0
    assert run(sourcing.setpiece_commands(str(tmp_path / "b.db"), 5, 3, 0)) > 0
    assert run(sourcing.setpiece_load(str(tmp_path / "c.db"), 250, 100, extra=3)) > 0
