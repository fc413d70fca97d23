"""One generic registry for losses, datasets, models and calibrators (timm style).

Registration is a decorator; lookup gives a "did you mean" hint for misspelled names.
A registry with plugins enabled (:meth:`Registry.enable_plugins`) also resolves names it does not
hold: an import path ``pkg.module:Name`` (imported then, cached by its exact text, never listed)
and the entry points installed in its group (the one of that name is imported then and added,
so it is listed from then on); see :mod:`losscli.plugins`.
This module imports nothing heavy so that the CLI can use it at start-up.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Any, Callable, Generic, Iterator, TypeVar

from losscli.errors import UnknownNameError, UsageError
from losscli.lossspec import is_plugin_name
from losscli import plugins

T = TypeVar("T")


@dataclass
class Entry(Generic[T]):
    name: str
    obj: T
    aliases: tuple[str, ...] = ()
    meta: dict[str, Any] = field(default_factory=dict)


class Registry(Generic[T]):
    """Name -> object map with aliases, metadata and helpful errors."""

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, Entry[T]] = {}
        self._aliases: dict[str, str] = {}
        self._group: str | None = None  # entry point group; None: no plugins
        self._adapt: Callable[[str, Any, str], tuple[Any, dict]] | None = None
        self._paths: dict[str, Entry[T]] = {}  # import-path plugins, by their exact text
        self._from_plugins: set[str] = set()  # keys added by loading plugins (forget_plugins removes them)

    def enable_plugins(self, group: str, adapt: Callable[[str, Any, str], tuple[Any, dict]]) -> None:
        """Resolve import paths and entry points of ``group`` too. ``adapt(name, obj, origin)`` turns
        a loaded object into ``(what this registry holds, metadata)``, raising UsageError (naming
        ``origin``) when it is not a valid plugin of this kind."""
        self._group, self._adapt = group, adapt

    def register(self, name: str, *, aliases: tuple[str, ...] | list[str] = (), **meta: Any) -> Callable[[T], T]:
        """Decorator: ``@REGISTRY.register("name", aliases=(...), family=...)``."""

        def decorator(obj: T) -> T:
            self.add(name, obj, aliases=aliases, **meta)
            return obj

        return decorator

    def add(self, name: str, obj: T, *, aliases=(), **meta: Any) -> None:
        key = self._norm(name)
        if key in self._entries or key in self._aliases:
            raise ValueError(f"{self.kind} {name!r} is registered twice")
        self._entries[key] = Entry(key, obj, tuple(aliases), dict(meta))
        for alias in aliases:
            akey = self._norm(alias)
            if akey in self._entries or akey in self._aliases:
                raise ValueError(f"{self.kind} alias {alias!r} is registered twice")
            self._aliases[akey] = key

    @staticmethod
    def _norm(name: str) -> str:
        return name.strip().lower().replace("-", "_")

    def canonical(self, name: str) -> str:
        """The registered name for ``name`` or an alias of it (a plugin's import path as written);
        raises with a suggestion."""
        return self.entry(name).name

    def _unknown(self, name: str) -> UnknownNameError:
        key = self._norm(name)
        installed = [self._norm(ep.name) for ep in plugins.entry_points(self._group)] if self._group else []
        candidates = list(self._entries) + list(self._aliases) + installed
        close = difflib.get_close_matches(key, candidates, n=5, cutoff=0.6)
        names = list(dict.fromkeys(self._aliases.get(c, c) for c in close))[:3]  # aliases -> names, once each
        hint = f" Did you mean {', '.join(map(repr, names))}?" if names else ""
        return UnknownNameError(f"unknown {self.kind} {name!r}.{hint} Known: {', '.join(self.names())}.")

    def get(self, name: str) -> T:
        return self.entry(name).obj

    def entry(self, name: str) -> Entry[T]:
        key = self._norm(name)
        if key in self._entries:
            return self._entries[key]
        if key in self._aliases:
            return self._entries[self._aliases[key]]
        found = self._plugin(name.strip()) if self._group is not None else None
        if found is None:
            raise self._unknown(name)
        return found

    # -- plugins ----------------------------------------------------------------------
    def _plugin(self, name: str) -> Entry[T] | None:
        """The plugin ``name`` names (an import path or an installed entry point), loaded now; None if none."""
        if name in self._paths:
            return self._paths[name]
        if is_plugin_name(name):
            obj = self._loading(lambda: plugins.import_object(name, self.kind))
            value, meta = self._adapt(name, obj, repr(name))
            self._paths[name] = Entry(name, value, (), dict(meta))
            return self._paths[name]
        key = self._norm(name)
        for ep in plugins.entry_points(self._group):
            if self._norm(ep.name) != key:
                continue
            obj = self._loading(lambda: plugins.load_entry_point(ep, self.kind))
            if key not in self._entries:  # (a module may register itself under this name when imported)
                value, meta = self._adapt(key, obj, plugins.entry_point_origin(ep))
                self.add(key, value, **meta)
                self._from_plugins.add(key)
            return self._entries[key]
        return None

    def _loading(self, load: Callable[[], Any]) -> Any:
        """Run ``load`` (an import); what the imported code registers here counts as plugin entries."""
        before = set(self._entries)
        try:
            return load()
        finally:
            self._from_plugins |= set(self._entries) - before

    def load_plugins(self) -> list[str]:
        """Load every installed entry point of this registry's group, so :meth:`names` lists them;
        returns one line per plugin that failed to load or is shadowed by a built-in name (those are
        skipped: a broken plugin never breaks the others)."""
        problems: list[str] = []
        if self._group is None:
            return problems
        seen: set[str] = set()
        for ep in plugins.entry_points(self._group):
            key = self._norm(ep.name)
            if key in seen:  # two installed distributions use one name: lookups take the first
                problems.append(f"{plugins.entry_point_origin(ep)} is ignored: another installed plugin is "
                                f"named {key!r}")
                continue
            seen.add(key)
            if key in self._entries or key in self._aliases:
                if key not in self._from_plugins:
                    problems.append(f"{plugins.entry_point_origin(ep)} is ignored: {self.kind} {key!r} is built in")
                continue
            try:
                self._plugin(ep.name)
            except UsageError as exc:
                problems.append(str(exc))
        return problems

    def forget_plugins(self) -> None:
        """Drop every plugin loaded so far (import paths, entry points and what their modules
        registered), e.g. between tests; built-in names stay. Imported modules stay imported."""
        self._paths.clear()
        for key in self._from_plugins:
            entry = self._entries.pop(key, None)
            for alias in entry.aliases if entry is not None else ():
                self._aliases.pop(self._norm(alias), None)
        self._from_plugins.clear()

    def info(self, name: str) -> dict[str, Any]:
        e = self.entry(name)
        return {"name": e.name, "aliases": list(e.aliases), **e.meta}

    def names(self, **filters: Any) -> list[str]:
        """Registered names, sorted, keeping those whose metadata equals every filter."""
        out = []
        for key, e in self._entries.items():
            if all(e.meta.get(k) == v for k, v in filters.items() if v is not None):
                out.append(key)
        return sorted(out)

    def __contains__(self, name: str) -> bool:
        """Whether ``name`` is known now (built in, or a plugin already loaded); imports nothing."""
        key = self._norm(name)
        return key in self._entries or key in self._aliases or name.strip() in self._paths

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)
