"""Is anything listening at a Ray address? Checked before a compare directory is made, because Ray
itself retries for about a minute, logging from C++ on stderr, before it gives up."""

from __future__ import annotations


def resolve_auto(address: str) -> tuple[str | None, str | None]:
    """``(address, problem)``: ``auto`` resolved as Ray resolves it (``RAY_ADDRESS``, else the running
    cluster recorded under Ray's temp directory), so that "no cluster" is found before the compare
    directory is made; other addresses unchanged. Uses a private Ray helper; without it, ``auto`` is
    left to ``ray.init``."""
    if address != "auto":
        return address, None
    try:
        from ray._private.services import canonicalize_bootstrap_address
    except ImportError:
        return None, None
    try:
        return canonicalize_bootstrap_address(address), None
    except ConnectionError:
        return None, "no running Ray cluster was found on this machine (nor in RAY_ADDRESS)"
    except Exception:  # noqa: BLE001 - an unreadable address file: let ray.init report it
        return None, None


def unreachable(address: str, timeout: float = 3.0) -> str | None:
    """Why nothing answers at ``address`` (``host:port``, ``ray://host:port`` or ``auto``), or None when
    a TCP connection opens or the address is one Ray resolves itself (a session directory)."""
    import socket

    resolved, problem = resolve_auto(address)
    if problem is not None or resolved is None:
        return problem
    host, sep, port = resolved.split("://", 1)[-1].rpartition(":")
    if not sep or not port.isdigit():
        return None
    host = host.strip("[]")  # an IPv6 literal: [::1]:6379
    try:
        with socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout):
            return None
    except OSError as exc:
        return f"nothing answers at {host}:{port} ({exc.strerror or exc})"
