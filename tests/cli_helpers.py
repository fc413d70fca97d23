"""Run losscli's real entry point in-process, with its error handling: ``(exit code, stdout, stderr)``."""

from __future__ import annotations

from pathlib import Path

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


#: a tiny synthetic dataset and budget for bad-input tests (seconds per run)
SYN = ["--dataset", "synthetic", "--set", "dataset.options={classes: 3, dim: 4, n_train: 60, n_test: 30}",
       "--model", "mlp", "--epochs", "1", "--device", "cpu", "--quiet"]


def one_line_exit_2(args, capsys, needle=None) -> str:
    """Run ``args``; assert exit 2 and exactly one ``error: ...`` line on stderr (containing ``needle``); return it."""
    code, _, err = invoke(args, capsys)
    assert code == 2, (args, code, err)
    assert len(err.strip().splitlines()) == 1, (args, err)
    assert "Traceback" not in err and err.startswith("error: ")
    if needle:
        assert needle.lower() in err.lower(), (args, err)
    return err


def train_tiny_run(run: Path) -> Path:
    """A finished ``SYN`` run in ``run`` (for the fixtures of tests that damage or misuse one)."""
    try:
        cli.main(["train", *SYN, "--out", str(run)])
    except SystemExit as exc:
        assert exc.code in (0, None)
    return run
