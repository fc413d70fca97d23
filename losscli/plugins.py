"""Plugins: objects named by import path (``pkg.module:Name``) or installed through entry points.

Plugin code runs only when the user names it or installed it:

* an import path is imported when a command (or ``build_loss``, ``build_model``, ``load_dataset``,
  ``build_calibrator``) meets it as a name;
* an installed distribution declares entry points in the groups of :data:`GROUPS` (the packaging
  convention pytest and others use), e.g. in its ``pyproject.toml``::

      [project.entry-points."losscli.losses"]
      my_loss = "my_package.losses:MyLoss"

  They are read as metadata (nothing imported) when a name is not built in, and only the entry
  point of that name is then imported; listing (``losscli losses``) imports every installed one.

Every failure is one :class:`~losscli.errors.UsageError` line naming the plugin (exit 2 on the
command line): a missing module or attribute, an exception raised while importing, an object of
the wrong kind. The original exception is chained, so ``LOSSCLI_DEBUG=1`` shows its traceback.
No torch here: the registries use this module at start-up.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

from losscli.errors import UsageError
from losscli.lossspec import is_plugin_name

#: entry point group of each registry kind
GROUPS = {"loss": "losscli.losses", "model": "losscli.models", "dataset": "losscli.datasets",
          "calibrator": "losscli.calibrators"}

_ENTRY_POINTS: dict[tuple, list] = {}  # (group, sys.path) -> entry points; sys.path changes refresh it


def import_object(path: str, what: str) -> Any:
    """The object ``pkg.module:Name`` names; ``what`` (e.g. "loss") words the errors."""
    if not is_plugin_name(path):
        raise UsageError(f"{what} {path!r} is not an import path; write package.module:Name")
    module_name, _, attr = path.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        if missing and (module_name == missing or module_name.startswith(missing + ".")):
            raise UsageError(f"{what} {path!r}: no module named {missing!r} (install it, or run from the directory "
                             "that holds it: the losscli command also searches the current directory)") from exc
        raise UsageError(f"{what} {path!r}: importing {module_name} failed: {describe_exception(exc)}") from exc
    except PLUGIN_ERRORS as exc:  # noqa: BLE001 - any error raised by the plugin's own code is one line
        raise UsageError(f"{what} {path!r}: importing {module_name} failed: {describe_exception(exc)}") from exc
    try:
        return getattr(module, attr)
    except AttributeError:
        raise UsageError(f"{what} {path!r}: module {module_name!r} has no attribute {attr!r}") from None


def entry_points(group: str) -> list:
    """The installed entry points of ``group`` (metadata only; nothing is imported). A distribution
    with unreadable metadata is skipped rather than breaking every name lookup."""
    key = (group, tuple(sys.path))
    if key not in _ENTRY_POINTS:
        from importlib.metadata import entry_points as _installed

        try:
            found = list(_installed(group=group))
        except Exception:  # noqa: BLE001 - broken metadata of some distribution: no plugins from it
            found = []
        _ENTRY_POINTS.clear()  # only the current sys.path matters
        _ENTRY_POINTS[key] = found
    return _ENTRY_POINTS[key]


def entry_point_origin(ep: Any) -> str:
    """``entry point 'name' (pkg.mod:Obj) of distribution dist 1.0``: what an error names."""
    dist = getattr(ep, "dist", None)
    where = f" of distribution {dist.name} {dist.version}" if dist is not None else ""
    return f"entry point {ep.name!r} ({ep.value}){where}"


def load_entry_point(ep: Any, what: str) -> Any:
    """Import the object an entry point names; one UsageError line naming it when that fails."""
    try:
        return ep.load()
    except PLUGIN_ERRORS as exc:  # noqa: BLE001 - a broken plugin is one line, never a traceback
        raise UsageError(f"{what} plugin {entry_point_origin(ep)} failed to load: {describe_exception(exc)}") from exc


#: what plugin code may raise that is the plugin's failure, one line like any other: SystemExit too
#: (a module that calls sys.exit() or argparse at import ended losscli silently, with its exit code)
PLUGIN_ERRORS = (Exception, SystemExit)


def describe_exception(exc: BaseException) -> str:
    """``TypeName: first line of the message`` (with file and line for syntax errors); the type alone
    when the message cannot be had (an exception whose ``__str__`` raises)."""
    try:
        if isinstance(exc, SyntaxError) and exc.filename:
            return f"{type(exc).__name__}: {exc.msg} ({exc.filename}, line {exc.lineno})"
        lines = str(exc).strip().splitlines()
    except Exception:  # noqa: BLE001 - the plugin's exception cannot even describe itself
        lines = []
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__
