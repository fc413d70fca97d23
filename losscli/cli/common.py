"""Options shared by several commands (Typer), so they read the same everywhere."""

from __future__ import annotations

import typer

from losscli.cli.output import Format

FORMAT_OPTION = typer.Option(Format.table, "--format", "-f", help="Output format for stdout: table, md, csv, yaml or json.")
QUIET_OPTION = typer.Option(False, "--quiet", "-q", help="No progress output on stderr.")


def quiet_libraries(quiet: bool) -> None:
    """Keep Hugging Face's own progress bars off with ``--quiet``, and off the logs when stderr is not
    a terminal (a bar redrawn into a file is noise). Set through the environment before ``datasets``
    is imported, so worker processes inherit it."""
    import os
    import sys

    if not (quiet or not sys.stderr.isatty()):
        return
    os.environ["HF_DATASETS_DISABLE_PROGRESS_BARS"] = "1"
    os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
    if "datasets" in sys.modules:  # already imported (a long-lived process, tests): switch it off there too
        sys.modules["datasets"].disable_progress_bars()


def parse_csv(text: str | None, what: str) -> list[str]:
    """``"a, b,c"`` -> ``["a", "b", "c"]`` (respecting brackets, for loss specs); an empty item
    (``a,,c``, a leading or trailing comma) is an error naming the option ``what`` and the position."""
    from losscli.lossspec import split_list

    return split_list(text, what) if text else []


def check_out(out: str | None) -> None:
    """``--out ''`` (an unset shell variable) silently meant the default directory, as ``--loss ''``
    meant ce: an empty value is refused instead."""
    check_not_empty(out, "--out", "give a directory, or leave --out out for the default")


def check_not_empty(value: str | None, what: str, hint: str) -> None:
    """A path given as ``''`` (an unset shell variable) is refused: it meant the current directory
    (a Path of ``''`` is ``.``), or nothing at all, without a word."""
    from losscli.errors import UsageError

    if value is not None and not str(value).strip():
        raise UsageError(f"{what} is empty; {hint}")
