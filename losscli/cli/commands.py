"""Import every ``losscli/cli/cmd_*.py`` module; each registers its command on ``app``.

Adding a command is one file. Command modules must not import torch at module level.
"""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path

for _mod in sorted(pkgutil.iter_modules([str(Path(__file__).parent)]), key=lambda m: m.name):
    if _mod.name.startswith("cmd_"):
        importlib.import_module(f"losscli.cli.{_mod.name}")
