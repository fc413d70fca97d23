"""Calibrators from plugins: ``pkg.module:Class`` names and installed ``losscli.calibrators`` entry points.

A plugin calibrator is a :class:`~losscli.calibrate.base.Calibrator` subclass (the contract is in
that module's docstring). Its ``name`` becomes the plugin's name (the import path, or the entry
point's name), so a saved calibrator's ``method`` resolves back to it in any process.
"""

from __future__ import annotations

import inspect
from typing import Any

from losscli.calibrate.base import Calibrator
from losscli.errors import UsageError


def adapt_calibrator(name: str, obj: Any, origin: str) -> tuple[type, dict]:
    """``(Calibrator subclass whose name is name, registry metadata)`` for the plugin ``obj``."""
    if not (inspect.isclass(obj) and issubclass(obj, Calibrator)):
        raise UsageError(f"calibrator {origin} is not a losscli.calibrate.Calibrator subclass")
    if obj.name != name:
        obj = type(obj.__name__, (obj,), {"name": name, "__module__": obj.__module__, "__doc__": obj.__doc__})
    return obj, {}
