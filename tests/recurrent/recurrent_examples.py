"""Puts examples/recurrent on sys.path, so tests import the example programs as a user would."""

from __future__ import annotations

import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "recurrent"
if str(EXAMPLES) not in sys.path:
    sys.path.insert(0, str(EXAMPLES))
