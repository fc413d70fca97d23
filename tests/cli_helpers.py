"""Run losscli's real entry point in-process, with its error handling: ``(exit code, stdout, stderr)``."""

from __future__ import annotations

import losscli.cli as cli

cli._register_commands()


def invoke(args, capsys) -> tuple[int, str, str]:
    try:
        cli.main(list(args))
        code = 0
    except SystemExit as exc:  # sys.exit(None) is success; any other non-int code a failure
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    captured = capsys.readouterr()
    return code, captured.out, captured.err
