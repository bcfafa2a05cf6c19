"""Text rendering of a program (placeholder)."""

from __future__ import annotations

from typing import Any


def explain(prog: Any) -> str:
    return ""
