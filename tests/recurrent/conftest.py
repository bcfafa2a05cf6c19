"""The example programs in examples/recurrent are imported by the tests as a user would import them."""

from __future__ import annotations

import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "recurrent"
if str(EXAMPLES) not in sys.path:
    sys.path.insert(0, str(EXAMPLES))
