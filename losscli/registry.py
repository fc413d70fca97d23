"""One generic registry for losses, datasets, models and calibrators (timm style).

Registration is a decorator; lookup gives a "did you mean" hint for misspelled names.
This module imports nothing heavy so that the CLI can use it at start-up.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Any, Callable, Generic, Iterator, TypeVar

from losscli.errors import UnknownNameError

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
        """The registered name for ``name`` or an alias of it; raises with a suggestion."""
        key = self._norm(name)
        if key in self._entries:
            return key
        if key in self._aliases:
            return self._aliases[key]
        candidates = list(self._entries) + list(self._aliases)
        close = difflib.get_close_matches(key, candidates, n=5, cutoff=0.6)
        names = list(dict.fromkeys(self._aliases.get(c, c) for c in close))[:3]  # aliases -> names, once each
        hint = f" Did you mean {', '.join(map(repr, names))}?" if names else ""
        raise UnknownNameError(
            f"unknown {self.kind} {name!r}.{hint} Known: {', '.join(self.names())}."
        )

    def get(self, name: str) -> T:
        return self._entries[self.canonical(name)].obj

    def entry(self, name: str) -> Entry[T]:
        return self._entries[self.canonical(name)]

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
        key = self._norm(name)
        return key in self._entries or key in self._aliases

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)
