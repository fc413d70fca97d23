"""train --resume: a run killed mid-way continues from its last checkpoint and ends exactly where an
uninterrupted run ends (CPU, same thread count)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import yaml

import losscli.cli as cli
from tests.cli_helpers import invoke as _invoke

cli._register_commands()

# ~0.3 s per epoch on one CPU thread: slow enough to kill mid-run, fast enough for the suite.
# aslp draws from torch's global RNG and keeps per-epoch state: both must come back exactly.
RUN = ["train", "--dataset", "synthetic", "--set", "dataset.options.n_train=4000", "--set", "threads=1",
       "--loss", "aslp", "--epochs", "8", "--batch-size", "32", "--device", "cpu", "--quiet"]


def _cli(*args):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in [os.getcwd(), os.environ.get("PYTHONPATH")] if p)}
    return [sys.executable, "-m", "losscli", *args], env


def _without_time(history):
    return [{k: v for k, v in row.items() if k != "train_seconds"} for row in history]


@pytest.mark.slow
def test_killed_run_resumes_to_the_same_result(tmp_path):
    args, env = _cli(*RUN, "--out", str(tmp_path / "whole"))
    subprocess.run(args, env=env, check=True, capture_output=True, timeout=600)

    cut = tmp_path / "cut"
    args, env = _cli(*RUN, "--out", str(cut))
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and proc.poll() is None:
        metrics = cut / "metrics.jsonl"
        # three rows written: the checkpoint after epoch 2 is on disk, epoch 3's is being made
        if metrics.exists() and metrics.read_text().count("\n") >= 3:
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.01)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    assert not (cut / "report.yaml").exists() and (cut / "checkpoint.pt").exists()

    args, env = _cli("train", "--resume", "--out", str(cut), "--format", "json")  # its own config.yaml
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "resuming after epoch" in done.stderr
    resumed = json.loads(done.stdout)
    whole = yaml.safe_load((tmp_path / "whole" / "report.yaml").read_text())
    assert resumed["metrics"]["test"] == whole["metrics"]["test"]
    assert resumed["metrics"]["best_epoch"] == whole["metrics"]["best_epoch"]
    assert _without_time(resumed["history"]) == _without_time(whole["history"])
    lines = [json.loads(x) for x in (cut / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in lines] == list(range(1, 9))  # no epoch twice, none missing
    assert not (cut / "checkpoint.pt").exists()  # removed once the run finished



SMALL = ["train", "--dataset", "synthetic", "--set", "dataset.options.n_train=200", "--epochs", "3",
         "--device", "cpu"]


def test_resume_edge_cases(tmp_path, capsys):
    out = str(tmp_path / "run")
    # nothing to continue: --resume starts the run (a job script can always pass it)
    code, _, err = _invoke([*SMALL, "--out", out, "--resume", "--quiet"], capsys)
    assert code == 0, err
    # finished: nothing to do, the report is returned
    code, stdout, err = _invoke(["train", "--resume", "--out", out, "--format", "json"], capsys)
    assert code == 0 and "already holds the finished run" in err and json.loads(stdout)["status"] == "ok"
    # other options than the run was started with: one line naming what differs
    code, _, err = _invoke([*SMALL[:-4], "--epochs", "5", "--device", "cpu", "--out", out, "--resume", "--quiet"], capsys)
    assert code == 2 and "train.epochs" in err and len(err.strip().splitlines()) == 1
    code, _, err = _invoke([*SMALL, "--out", out, "--resume", "--overwrite", "--quiet"], capsys)
    assert code == 2 and "give one of them" in err
    # a checkpoint is only resumed by the configuration that wrote it, and never read as code
    import torch

    from losscli.engine import checkpoint
    from losscli.errors import UsageError

    ck = tmp_path / "run" / "checkpoint.pt"
    torch.save({"schema": checkpoint.SCHEMA, "run_key": "abc", "epoch": 1}, ck)
    with pytest.raises(UsageError, match="belongs to another configuration"):
        checkpoint.load(tmp_path / "run", "def")
    ck.write_bytes((tmp_path / "run" / "model.pt").read_bytes())
    with pytest.raises(UsageError, match="not a losscli checkpoint"):
        checkpoint.load(tmp_path / "run", "def")
