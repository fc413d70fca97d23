"""No finished result is ever lost: real processes killed, interrupted, crowded and starved of disk.

Each test runs ``losscli compare`` as a subprocess on a small synthetic grid (Linux: workers are
found through /proc), does something hostile to it, and checks that finished runs survive
untouched, nothing is marked failed that did not fail by itself, and a rerun completes.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.proc_helpers import answers_ctrl_c

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs /proc (Linux)")]

GRID = ["--dataset", "synthetic", "--set", "dataset.options={classes: 3, dim: 8, n_train: 1500, n_test: 100}",
        "--model", "mlp", "--losses", "ce,gce,mae", "--seeds", "2", "--noise", "none", "--epochs", "12",
        "--batch-size", "16", "--device", "cpu", "--no-batch-runs", "--format", "json"]

# for tests that need no time window to act in (the later --epochs wins)
QUICK = ["--epochs", "2"]


def _compare(out: Path, *extra: str, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "losscli", "compare", *GRID, "--out", str(out), *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def _children(pid: int) -> list[int]:
    """Direct children of ``pid``: the kernel's lists when it has them (cheap, however many
    processes exist), else a scan of /proc."""
    listings = list(Path(f"/proc/{pid}/task").glob("*/children"))  # per thread: a pool spawns from several
    if not listings:
        return _scan_children(pid) if Path(f"/proc/{pid}").exists() else []
    found = []
    for listing in listings:
        try:
            found += [int(x) for x in listing.read_text().split()]
        except OSError:
            continue
    return found


def _scan_children(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


def _workers(pid: int) -> list[int]:
    """The pool's worker processes (spawned by multiprocessing), not its resource tracker. Match the
    code they run: their command line can also carry ``-W...resource_tracker`` (a PYTHONWARNINGS
    filter naming the tracker), so the word alone does not tell a worker from the tracker."""
    found = []
    for child in _children(pid):
        try:
            cmd = Path(f"/proc/{child}/cmdline").read_bytes()
        except OSError:
            continue
        if b"spawn_main" in cmd:
            found.append(child)
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _done(out: Path) -> dict[Path, int]:
    """Finished runs -> their report's mtime (ns)."""
    found = {}
    for report in out.glob("runs/*/report.yaml"):
        try:
            data = yaml.safe_load(report.read_text())
        except (OSError, yaml.YAMLError):
            continue
        if isinstance(data, dict) and data.get("status") == "ok":
            found[report] = report.stat().st_mtime_ns
    return found


def _wait_for(cond, timeout=120.0, step=0.05, proc: subprocess.Popen | None = None):
    """Poll ``cond`` until it is truthy; with ``proc``, fail at once (showing its stderr) if it exits first."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = cond()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            _, err = proc.communicate()
            raise AssertionError(f"compare exited ({proc.returncode}) before the condition held: {err[-2000:]}")
        time.sleep(step)
    detail = f"; compare still running, children {_children(proc.pid)}" if proc is not None else ""
    raise AssertionError(f"timed out{detail}")


def test_killed_worker_leaves_runs_pending_and_the_grid_completes(tmp_path):
    out = tmp_path / "c"
    proc = _compare(out, "--jobs", "2")
    # any live worker will do: with one run finished, the grid is mid-way whichever worker dies
    victim = _wait_for(lambda: len(_done(out)) >= 1 and next(iter(_workers(proc.pid)), None), proc=proc)
    before = _done(out)
    os.kill(victim, signal.SIGKILL)  # what the OOM killer does
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr
    report = yaml.safe_load((out / "report.yaml").read_text())
    assert report["n_failed"] == 0 and report["n_pending"] == 0 and report["n_runs"] == 6
    after = _done(out)
    assert len(after) == 6
    for path, stamp in before.items():  # finished before the kill: never rewritten
        assert after[path] == stamp
    assert "resubmitting" in stderr


def test_workers_die_with_the_compare_process(tmp_path):
    out = tmp_path / "c"
    proc = _compare(out, "--jobs", "2", "--quiet")
    workers = _wait_for(lambda: _workers(proc.pid), proc=proc)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    _wait_for(lambda: not any(_alive(w) for w in workers), timeout=15)


@pytest.mark.parametrize("how", ["ctrl-c", "sigterm"])
def test_ctrl_c_cancels_pending_work_and_says_what_is_kept(tmp_path, how):
    """SIGTERM (`kill PID`, a scheduler's preemption) takes Ctrl-C's path; it had killed the driver at
    once, without a word."""
    out = tmp_path / "c"
    proc = _compare(out, "--jobs", "2", start_new_session=True, preexec_fn=answers_ctrl_c)
    _wait_for(lambda: len(_done(out)) >= 1 and _workers(proc.pid), proc=proc)
    workers = _workers(proc.pid)
    if how == "ctrl-c":
        os.killpg(proc.pid, signal.SIGINT)  # a terminal sends Ctrl-C to the whole foreground group
    else:
        os.kill(proc.pid, signal.SIGTERM)  # the driver only: its workers must stop with it
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == (130 if how == "ctrl-c" else 143)
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("error: interrupted;") and "finished run(s) are kept" in last
    _wait_for(lambda: not any(_alive(w) for w in workers), timeout=15)
    kept = _done(out)
    time.sleep(1.0)
    assert _done(out) == kept  # nothing queued went on running after the exit
    resumed = _compare(out, "--jobs", "2")
    _, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err
    assert f"{len(kept)} already done" in err


def test_second_compare_on_the_same_directory_is_refused_or_waits(tmp_path):
    out = tmp_path / "c"
    first = _compare(out, "--jobs", "1", "--quiet")
    _wait_for(lambda: (out / ".lock").is_file() and _children(first.pid) == [] and len(_done(out)) >= 1)
    second = _compare(out, "--jobs", "1", "--quiet")
    _, err = second.communicate(timeout=60)
    assert second.returncode == 2 and "in use by process" in err and len(err.strip().splitlines()) == 1
    waiting = _compare(out, "--jobs", "1", "--wait")
    _, err_first = first.communicate(timeout=300)
    assert first.returncode == 0, err_first
    _, err_wait = waiting.communicate(timeout=300)
    assert waiting.returncode == 0, err_wait
    assert "6 already done" in err_wait  # it waited, then found everything finished: nothing trained twice


def _limit_file_size(limit: int):
    def apply() -> None:
        import resource

        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a failed write, not a killed process
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return apply


def test_io_error_leaves_runs_pending_and_names_the_path(tmp_path):
    """A disk that fills up (simulated with a file-size limit: writes past it fail with EFBIG)."""
    out = tmp_path / "c"
    starved = _compare(out, "--jobs", "1", *QUICK, preexec_fn=_limit_file_size(4_000))
    _, err = starved.communicate(timeout=300)
    assert starved.returncode == 1
    last = err.strip().splitlines()[-1]
    assert "I/O error" in last and "File too large" in last and str(out) in last
    reports = [yaml.safe_load(p.read_text()) for p in out.glob("runs/*/report.yaml") if p.stat().st_size]
    assert not any(isinstance(r, dict) and r.get("status") == "failed" for r in reports)
    healthy = _compare(out, "--jobs", "1", *QUICK)
    _, err = healthy.communicate(timeout=300)
    assert healthy.returncode == 0, err
    assert yaml.safe_load((out / "report.yaml").read_text())["n_runs"] == 6


def test_truncated_or_incomplete_report_is_rerun_on_resume(tmp_path):
    out = tmp_path / "c"
    first = _compare(out, "--jobs", "1", "--quiet", *QUICK)
    assert first.wait(timeout=300) == 0
    done = sorted(_done(out))
    truncated, stripped = done[0], done[1]
    truncated.write_text(truncated.read_text()[:200])
    data = yaml.safe_load(stripped.read_text())
    data["metrics"].pop("test")
    stripped.write_text(yaml.safe_dump(data))
    untouched = {p: p.stat().st_mtime_ns for p in done[2:]}
    resumed = _compare(out, "--jobs", "1", *QUICK)
    _, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0 and "4 already done, 2 to run" in err
    report = yaml.safe_load((out / "report.yaml").read_text())
    assert all(len(e["metrics"]["accuracy"]["values"]) == 2 for e in report["results"])  # every seed counted
    assert {p: p.stat().st_mtime_ns for p in done[2:]} == untouched
