"""Where the simulator's tests find architectures: their own fixtures in ``tests/sim/archs``,
and Spigo's files in ``../shared/spigo`` beside the project (or ``$SETPIECE_SPIGO_DIR``) when
that folder exists."""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ARCHS = Path(__file__).resolve().parent / "archs"


def spigo_dir() -> Path | None:
    configured = os.environ.get("SETPIECE_SPIGO_DIR")
    folder = Path(configured) if configured else ROOT.parent / "shared" / "spigo"
    return folder if folder.is_dir() else None


SPIGO = spigo_dir()
SPIGO_FILES = sorted(SPIGO.glob("*_arch.json")) if SPIGO else []
