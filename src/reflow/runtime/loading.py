"""Importing a user's program file (a reactor program, a serving pipeline) as a module.

The file is imported as a module named after it, with its folder on ``sys.path``, so that it can import its
neighbours and worker processes (which inherit ``sys.path``) can import it too; a name that is not an
identifier, or is taken, gets a private one (``<prefix>_<stem>``). Code under ``if __name__ == "__main__":``
does not run.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType

from reflow.errors import ReflowError


def import_file(path: str | Path, prefix: str, what: str, error: type[ReflowError]) -> ModuleType:
    """Import ``path``; ``error`` (naming it as ``what``) if it does not exist or is not Python."""
    file = Path(path)
    if not file.is_file():
        raise error(f"{what} {file} does not exist")
    name = file.stem
    if not name.isidentifier() or name in sys.modules:
        name = f"{prefix}_{re.sub(r'[^0-9A-Za-z_]', '_', file.stem)}"
    folder = str(file.resolve().parent)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    spec = importlib.util.spec_from_file_location(name, file)
    if spec is None or spec.loader is None:
        raise error(f"cannot import {what} {file}; it must be a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module
