"""Atomic file writes: a temp file in the target's directory, then ``os.replace``.

A reader (or a crash) never sees a half-written file: either the old content or the new one.
Parent directories are created as needed. New files get the usual permissions (0666 minus the
process umask), as ``open()`` would give them: ``mkstemp`` alone creates 0600 files that
teammates cannot read. torch and yaml are imported inside the functions that need them.
"""

from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path
from typing import Any, Union

PathLike = Union[str, "os.PathLike[str]"]

__all__ = ["atomic_write_bytes", "atomic_write_text", "atomic_torch_save", "write_yaml", "write_json", "file_mode",
           "check_writable_dir", "check_utf8_path"]


def file_mode() -> int:
    """0666 minus the current umask (read without changing it for longer than one call)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def check_utf8_path(path: PathLike, what: str) -> None:
    """Refuse a path that is not UTF-8 text (a name in another encoding reaches Python as lone
    surrogates): the reports record their paths in YAML, and that write failed after training."""
    from losscli.errors import UsageError

    try:
        str(path).encode("utf-8")
    except UnicodeEncodeError:
        raise UsageError(f"{what} {str(path)!r} is not valid UTF-8 text; choose a UTF-8 name for {what}") from None


def check_writable_dir(directory: PathLike, what: str) -> None:
    """Raise a one-line ``UsageError`` unless files can be created in ``directory``, found by trying:
    permission bits say nothing for root, /proc, read-only mounts or over-long names. Directories the
    probe had to create are removed again, so a later failure leaves nothing behind."""
    from losscli.errors import UsageError

    directory = Path(directory)
    created: list[Path] = []
    try:
        missing, p = [], directory
        while not p.exists():
            missing.append(p)
            if p.parent == p:
                break
            p = p.parent
        for d in reversed(missing):
            d.mkdir()
            created.append(d)
        if not directory.is_dir():
            raise NotADirectoryError(20, "exists and is not a directory", str(directory))
        fd, probe = tempfile.mkstemp(prefix=".write-test.", dir=directory)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise UsageError(f"cannot write to {what} {directory}: {exc.strerror or exc}; choose another {what}") from None
    finally:
        for d in reversed(created):
            try:
                d.rmdir()
            except OSError:
                pass


def atomic_write_bytes(path: PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (temp file in the same directory + ``os.replace``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            try:
                os.fsync(fh.fileno())
            except OSError:  # some filesystems do not support fsync; the rename is still atomic
                pass
        os.chmod(tmp, file_mode())
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(exc, OSError) and not exc.filename:  # say which file (a full disk names no path)
            raise OSError(exc.errno, exc.strerror, str(path)) from exc
        raise
    return path


def atomic_write_text(path: PathLike, text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically."""
    return atomic_write_bytes(path, text.encode(encoding))


def atomic_torch_save(obj: Any, path: PathLike) -> Path:
    """``torch.save(obj, path)`` atomically (serialised in memory, then written and renamed)."""
    import torch

    buf = io.BytesIO()
    torch.save(obj, buf)
    return atomic_write_bytes(path, buf.getvalue())


def write_yaml(path: PathLike, data: Any) -> Path:
    """Dump ``data`` as YAML (tensors, numpy values, enums, paths made plain; NaN -> null), atomically."""
    from losscli.serialize import dump_yaml

    return atomic_write_text(path, dump_yaml(data))


def write_json(path: PathLike, data: Any) -> Path:
    """Dump ``data`` as indented JSON (same conversions as :func:`write_yaml`), atomically."""
    from losscli.serialize import dump_json

    return atomic_write_text(path, dump_json(data) + "\n")
