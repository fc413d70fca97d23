"""losscli's command line (Typer).

The CLI stays thin: each command lives in its own module, parses its options, calls the
library and prints. Start-up must stay fast: no module imported here may import torch at
import time (heavy imports go inside the command functions). A test checks this.
"""

from __future__ import annotations

import errno
import os
import signal
import sys

from losscli.cli.app import app  # noqa: E402,F401  (the Typer app; tests invoke it)


def _register_commands() -> None:
    # Each module adds its command(s) to ``app`` when imported.
    from losscli.cli import commands  # noqa: F401


def _click_kind(exc: BaseException) -> str | None:
    """Which click exception ``exc`` is (Typer vendors click in some releases, so match by class name)."""
    names = {c.__name__ for c in type(exc).__mro__}
    for kind in ("Exit", "Abort", "UsageError", "ClickException"):
        if kind in names:
            return kind
    return None


#: Ctrl-C in a command without its own message (train and compare name what they keep): profile,
#: eval and calibrate keep nothing partial, since every file is written whole (atomically) at the end
_INTERRUPTED = "error: interrupted before the command finished; no file was left half-written"


def main(argv: list[str] | None = None) -> None:
    """Console entry point: one clear line and an exit code for every known failure."""
    _register_commands()
    try:
        cwd = os.getcwd()
    except OSError:  # deleted (or moved away) under the shell: a FileNotFoundError traceback before any command
        print("error: the current directory no longer exists (deleted or moved); cd to an existing directory "
              "and run the command again", file=sys.stderr)
        sys.exit(2)
    # plugins named by import path (--loss examples.custom_loss:Name) are found in the current
    # directory, as under `python -m`; searched last, so it never shadows an installed module
    if "" not in sys.path and cwd not in sys.path:
        sys.path.append(cwd)
    terminated = _Sigterm()
    previous = terminated.install()
    try:
        _run(argv, terminated)
    finally:  # an embedding (tests call main() in process) gets its own handler back
        terminated.restore(previous)


def _run(argv: list[str] | None, terminated: "_Sigterm") -> None:
    from losscli.errors import LossCLIError

    debug = os.environ.get("LOSSCLI_DEBUG", "") not in ("", "0")
    try:
        result = app(args=argv, prog_name="losscli", standalone_mode=False)
    except KeyboardInterrupt:
        print(_INTERRUPTED, file=sys.stderr)
        sys.exit(terminated.exit_code(130))
    except LossCLIError as exc:
        if debug:
            raise
        print(f"error: {' '.join(str(exc).split())}", file=sys.stderr)
        sys.exit(terminated.exit_code(exc.exit_code))
    except Exception as exc:  # noqa: BLE001 - the CLI promises no tracebacks
        kind = _click_kind(exc)
        if kind == "Exit":  # --help, --version, typer.Exit
            sys.exit(exc.exit_code)
        if kind == "Abort":
            print(_INTERRUPTED, file=sys.stderr)
            sys.exit(terminated.exit_code(130))
        if type(exc).__name__ == "NoArgsIsHelpError":  # bare `losscli`: the help, as asked for
            print(exc.format_message())
            sys.exit(0)
        if kind in ("UsageError", "ClickException"):  # bad option, missing argument, wrong type: one line, exit 2
            ctx = getattr(exc, "ctx", None)
            where = f" (see `{ctx.command_path} --help`)" if ctx is not None else ""
            print(f"error: {' '.join(exc.format_message().split())}{where}", file=sys.stderr)
            sys.exit(2)
        if debug:
            raise
        if isinstance(exc, OSError) and exc.errno == errno.ENAMETOOLONG:
            # a path given by the user: Path.exists()/is_dir()/is_file() raise this one instead of answering False
            name = str(exc.filename or "")
            name = name if len(name) <= 80 else name[:77] + "..."
            print(f"error: a file name in {name!r} is too long for the file system; give a shorter path", file=sys.stderr)
            sys.exit(2)
        print(f"error: {type(exc).__name__}: {' '.join(str(exc).split())} (set LOSSCLI_DEBUG=1 for the traceback)",
              file=sys.stderr)
        sys.exit(1)
    if result == 130:  # Typer turns Ctrl-C into a returned 130 outside standalone mode: it exited silently
        print(_INTERRUPTED, file=sys.stderr)
    sys.exit(terminated.exit_code(result) if isinstance(result, int) else 0)


class _Sigterm:
    """SIGTERM (``kill PID``, a scheduler preempting the job, ``docker stop``) handled as Ctrl-C is: the
    same clean path (train names the checkpoint it keeps, compare the finished runs, its worker
    processes and Ray stop with it) instead of an instant death without a word; the exit code then
    says which signal it was (143 = 128 + SIGTERM, where Ctrl-C gives 130)."""

    def __init__(self) -> None:
        self.received = False

    def __call__(self, signum, frame) -> None:
        self.received = True
        raise KeyboardInterrupt

    def exit_code(self, code: int) -> int:
        return 128 + signal.SIGTERM if self.received and code == 130 else code

    def install(self):
        """Handle SIGTERM; returns the handler it replaces (None where none can be set: main() called
        from a thread other than the main one, where signals cannot be handled)."""
        try:
            return signal.signal(signal.SIGTERM, self)
        except ValueError:
            return None

    @staticmethod
    def restore(previous) -> None:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
