"""--executor ray: the same results as the local executor (one node and a simulated two-node cluster),
run files shipped back to the driver (no shared filesystem), resume, a killed worker, tuning, Ctrl-C.

Ray starts once for the module (loopback only, 2 CPUs, no dashboard); the two-node cluster test
runs last and brings its own cluster. Tests that need Ray skip cleanly when it is not installed.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
import yaml

from losscli.app.compare.run import run_compare
from losscli.app.executors.runfiles import pack_run, unpack_run
from losscli.engine import rundir
from tests.cli_helpers import invoke
from tests.grids import SYNTH, tiny_config
from tests.proc_helpers import LOOPBACK, answers_ctrl_c, descendants, listening, sockets_of, task_workers

_cfg = tiny_config
QUIET = {"log_to_driver": False, "logging_level": logging.ERROR, "include_dashboard": False}


def _ray():
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    ray = pytest.importorskip("ray")
    # the mode is frozen when ray is imported; an earlier test may have imported it before the variable
    # was set, so set the frozen constant too (losscli's own local instance does the same)
    ray._private.ray_constants.ENABLE_RAY_CLUSTER = False
    return ray


@pytest.fixture(scope="module")
def local_ray():
    ray = _ray()
    if ray.is_initialized():
        ray.shutdown()
    ray.init(num_cpus=2, _node_ip_address="127.0.0.1", **QUIET)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def reference_dir(tmp_path_factory):
    """The small grid through the local executor: what every Ray variant must reproduce."""
    out = tmp_path_factory.mktemp("local")
    run_compare(_cfg(executor="local"), out, progress=False)
    return out


@pytest.fixture(scope="module")
def reference(reference_dir):
    return _runs(reference_dir)


def _report(out: Path) -> list:
    """The compare report's results without what depends on the machine's speed (timing, and the
    verdict sentence, which quotes the step-time ratio): statistics, p-values, verdict outcomes."""
    results = yaml.safe_load((out / "report.yaml").read_text())["results"]
    return [{**{k: v for k, v in e.items() if k not in ("timing", "verdict")},
             "outcome": (e.get("verdict") or {}).get("outcome")} for e in results]


def _runs(out: Path) -> dict[str, dict]:
    """Per run: its status, test/val metrics, per-epoch losses, weights and logits."""
    runs = {}
    for d in sorted((out / "runs").iterdir()):
        report = rundir.read_report(d)
        runs[d.name] = {"status": report["status"], "metrics": {k: report["metrics"].get(k) for k in ("test", "val")},
                        "losses": [row.get("train_loss") for row in report["history"]],
                        "state": torch.load(d / rundir.MODEL, weights_only=True),
                        "logits": torch.load(d / rundir.LOGITS, weights_only=True)}
    return runs


def _assert_same_runs(got: dict, want: dict) -> None:
    assert sorted(got) == sorted(want)
    for key, a in got.items():
        b = want[key]
        assert a["status"] == b["status"] == "ok"
        assert a["metrics"] == b["metrics"], key
        assert a["losses"] == b["losses"], key
        assert a["state"].keys() == b["state"].keys()
        assert all(torch.equal(a["state"][k], b["state"][k]) for k in a["state"]), key
        assert all(torch.equal(a["logits"][k], b["logits"][k]) for k in a["logits"]), key


# --------------------------------------------------------------------------- without Ray


def test_missing_ray_is_one_line_and_exit_2(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError, as when not installed
    out = tmp_path / "c"
    code, stdout, err = invoke(["compare", "--dataset", "synthetic", "--losses", "ce", "--seeds", "1", "--executor",
                                "ray", "--out", str(out)], capsys)
    assert code == 2
    assert err.strip() == 'error: --executor ray needs Ray: pip install "losscli[ray]"'
    assert not out.exists()  # refused before anything was created or trained


def test_unknown_executor_is_one_line_with_a_suggestion(tmp_path, capsys):
    code, _, err = invoke(["compare", "--dataset", "synthetic", "--losses", "ce", "--seeds", "1", "--executor",
                           "rya", "--out", str(tmp_path / "c")], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "'ray'" in err


def test_importing_the_backends_does_not_import_ray():
    code = "import sys, losscli.app.executors as e; e._import_backends(); print('ray' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


def test_tuning_and_the_grid_share_one_ray_executor_closed_once_at_the_end(tmp_path, monkeypatch):
    """Each RayExecutor that finds no Ray running starts (and on close stops) a local instance, seconds
    each: a tuned compare makes one. A stand-in that runs tasks here, so no Ray is needed."""
    import losscli.app.executors as executors
    from losscli.app.executors.local import LocalExecutor

    made, events = [], []

    class Stand(LocalExecutor):
        slots = 2

        def run(self, tasks):
            events.extend(["run"] * len(tasks))
            return super().run(tasks)

        def close(self):
            events.append("close")
            super().close()

    def make(name, jobs, log=None, **options):
        assert name == "ray"
        made.append(Stand())
        return made[-1]

    monkeypatch.setattr(executors, "check_executor", lambda name, **options: None)
    monkeypatch.setattr(executors, "make_executor", make)
    report = run_compare(_cfg(executor="ray", losses=["ce"], seeds=1, tune={"trials": 2}), tmp_path, progress=False)
    assert report["n_failed"] == 0 and report.get("n_pending", 0) == 0
    assert len(made) == 1
    assert events == ["run"] * 3 + ["close"]  # 2 trials, then the grid's run; closed once, at the end


def test_run_files_travel_as_data_and_never_overwrite_a_finished_run(tmp_path, reference):
    from losscli.app.executors.ray import _run_remote
    from losscli.app.executors.task import Task
    from losscli.app.compare.grid import expand_grid

    spec = expand_grid(_cfg())[0]
    real = tmp_path / "compare" / "runs" / spec.key()
    result = _run_remote(Task([spec], [real]))  # what a Ray worker does, here in this process
    assert not real.exists()  # the worker wrote nothing into the compare directory
    files = result["files"][0]
    assert {"config.yaml", "metrics.jsonl", "model.pt", "logits.pt", "report.md", "report.yaml"} <= set(files)
    assert unpack_run(real, files)
    report = rundir.read_report(real)
    assert report["status"] == "ok" and report["run_dir"] == str(real.resolve())  # the temp dir is not recorded
    assert yaml.safe_load(files["report.yaml"])["run_dir"] != str(real.resolve())  # it trained elsewhere
    assert pack_run(real).keys() == files.keys()
    before = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in real.iterdir()}
    assert not unpack_run(real, {**files, "report.md": b"changed"})  # a retried task's late copy: ignored
    assert {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in real.iterdir()} == before
    assert _runs(tmp_path / "compare")[spec.key()]["metrics"] == reference[spec.key()]["metrics"]


def test_a_worker_builds_the_dataset_once_and_reuses_it(tmp_path, monkeypatch):
    """The dataset is built once per Ray worker process, not shipped or rebuilt with every task."""
    import losscli.app.executors.ray as ray_executor
    import losscli.data
    from losscli.app.compare.grid import expand_grid
    from losscli.app.executors.task import Task

    calls, real = [], losscli.data.load_dataset
    monkeypatch.setattr(losscli.data, "load_dataset", lambda *a, **k: calls.append(a) or real(*a, **k))
    monkeypatch.setattr(ray_executor, "_WORKER_CACHE", {})  # a fresh worker process
    for spec in expand_grid(_cfg(losses=["ce"], seeds=2)):  # two tasks, as one worker runs them in turn
        assert ray_executor._run_remote(Task([spec], [tmp_path / spec.key()]))["files"][0]
    assert len(calls) == 1


def test_a_run_that_fails_by_itself_on_a_worker_is_recorded_failed(tmp_path):
    """A NaN run on a Ray worker is the run's own failure: recorded as failed in the compare directory,
    as with the other executors (unlike a dead worker, whose runs stay pending)."""
    from losscli.app.compare.grid import expand_grid
    from losscli.app.executors.ray import _run_remote, _write_back
    from losscli.app.executors.task import Task

    spec = expand_grid(_cfg(losses=["square"], seeds=1, train={"epochs": 2, "batch_size": 32, "lr": 1e6,
                                                                 "optimizer": "sgd", "warmup_epochs": 0}))[0]
    real = tmp_path / "runs" / spec.key()
    task = Task([spec], [real])
    result = _run_remote(task)  # what a Ray worker does, here in this process
    outcome = _write_back(task, task, result)
    assert outcome.statuses == ["failed"] and rundir.run_status(real) == "failed"
    assert rundir.read_report(real)["error"]


def test_unpacking_replaces_a_failed_attempt_and_rejects_paths_outside(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.jsonl").write_text("{}\n")  # left by an earlier attempt
    (run / "checkpoint.pt").write_bytes(b"old")
    failed = {"config.yaml": b"x: 1\n", "report.yaml": b"schema: losscli/run/v1\nstatus: failed\nerror: boom\n"}
    assert unpack_run(run, failed)
    assert rundir.run_status(run) == "failed"
    assert sorted(p.name for p in run.iterdir()) == ["config.yaml", "report.yaml"]
    for bad in ("../escape", "/etc/x", "a/../../b"):
        with pytest.raises(ValueError):
            unpack_run(tmp_path / "other", {bad: b"", "report.yaml": b""})
    assert not (tmp_path / "escape").exists()


def test_sqlite_paths_are_made_absolute_and_a_bad_storage_is_named(tmp_path, monkeypatch):
    from losscli.app.executors.ray import _absolute_sqlite, _storage_problem
    from losscli.app.tuning.trial import TrialTask

    monkeypatch.chdir(tmp_path)
    assert _absolute_sqlite("sqlite:///t.db") == f"sqlite:///{tmp_path.resolve()}/t.db"
    assert _absolute_sqlite("sqlite:////abs/t.db") == "sqlite:////abs/t.db"
    assert _absolute_sqlite("postgresql://u:p@h/db") == "postgresql://u:p@h/db"
    task = TrialTask(None, f"sqlite:///{tmp_path}/missing-dir/t.db", "s", 1, 0, "none", "ce", "x")
    problem = _storage_problem(task)
    assert problem and "OperationalError" in problem


# --------------------------------------------------------------------------- on a local Ray instance


def test_grid_on_ray_equals_local_and_resumes(tmp_path, local_ray, reference, reference_dir):
    logs: list[str] = []
    report = run_compare(_cfg(executor="ray"), tmp_path, progress=True, log=logs.append)
    assert report["n_failed"] == 0 and report.get("n_pending", 0) == 0
    _assert_same_runs(_runs(tmp_path), reference)
    assert _report(tmp_path) == _report(reference_dir)
    assert any("done, " in line and "running" in line and "pending" in line and "failed" in line for line in logs)
    runs = sorted((tmp_path / "runs").iterdir())
    stamps = {d: (d / "report.yaml").stat().st_mtime_ns for d in runs}
    (runs[0] / "report.yaml").unlink()  # one run interrupted: a rerun redoes it and only it
    logs.clear()
    run_compare(_cfg(executor="ray"), tmp_path, progress=False, log=logs.append)
    assert any("3 already done, 1 to run" in line for line in logs)
    assert all((d / "report.yaml").stat().st_mtime_ns == stamps[d] for d in runs[1:])
    _assert_same_runs(_runs(tmp_path), reference)
    logs.clear()
    run_compare(_cfg(executor="ray"), tmp_path, progress=False, log=logs.append)
    assert any("4 already done, 0 to run" in line for line in logs)


def test_finished_runs_are_not_sent_to_the_cluster(tmp_path, local_ray, reference):
    from losscli.app.compare.grid import expand_grid
    from losscli.app.executors.ray import RayExecutor
    from losscli.app.executors.task import Task

    run_compare(_cfg(executor="local", losses=["ce"], seeds=1), tmp_path, progress=False)
    spec = expand_grid(_cfg(losses=["ce"], seeds=1))[0]
    done = tmp_path / "runs" / spec.key()
    stamp = (done / "report.yaml").stat().st_mtime_ns
    executor = RayExecutor()
    try:
        outcomes = list(executor.run([Task([spec], [done])]))
    finally:
        executor.close()
    assert [o.statuses for o in outcomes] == [["ok"]] and executor.submitted == 0
    assert (done / "report.yaml").stat().st_mtime_ns == stamp


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="finds Ray's worker processes in /proc (Linux)")
def test_killed_worker_is_retried_and_nothing_is_failed_or_overwritten(tmp_path, local_ray):
    cfg = _cfg(executor="ray", losses=["ce", "gce", "mae"], seeds=2,
               dataset={**SYNTH, "options": {**SYNTH["options"], "n_train": 1200}}, train={"epochs": 6, "batch_size": 16,
                                                                                         "lr": 0.01})
    seen: dict = {}

    def kill_one_mid_grid() -> None:
        deadline = time.time() + 120
        while time.time() < deadline:
            finished = sorted(tmp_path.glob("runs/*/report.yaml"))
            workers = task_workers()
            if finished and workers:
                seen["finished"] = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in finished}
                os.kill(workers[0], signal.SIGKILL)
                seen["killed"] = workers[0]
                return
            time.sleep(0.02)

    killer = threading.Thread(target=kill_one_mid_grid)
    killer.start()
    try:
        report = run_compare(cfg, tmp_path, progress=False)
    finally:
        killer.join()
    assert "killed" in seen, "the grid finished before a worker could be killed mid-task; make it longer"
    assert report["n_failed"] == 0 and report.get("n_pending", 0) == 0
    assert all(rundir.run_status(d) == "ok" for d in (tmp_path / "runs").iterdir())
    assert len(list((tmp_path / "runs").iterdir())) == 6
    for path, (mtime, data) in seen["finished"].items():  # finished before the kill: untouched since
        assert path.stat().st_mtime_ns == mtime and path.read_bytes() == data


def test_tuning_runs_its_trials_on_ray(tmp_path, local_ray):
    cfg = _cfg(executor="ray", seeds=1, tune={"trials": 2})
    report = run_compare(cfg, tmp_path, progress=False)
    assert report["n_failed"] == 0
    for label in ("ce", "gce"):
        entry = report["tuning"][label]
        assert list(entry["n_complete"].values())[0] + list(entry["n_pruned"].values())[0] == 2
    assert (tmp_path / "tuning.db").is_file()  # the default SQLite storage, reached by workers on this node


def test_a_storage_workers_cannot_open_stops_tuning_with_one_line(tmp_path, local_ray):
    from losscli.app.compare.grid import expand_grid
    from losscli.app.executors.ray import RayExecutor
    from losscli.app.tuning.trial import TrialTask
    from losscli.errors import UsageError

    spec = expand_grid(_cfg(losses=["ce"], seeds=1))[0]
    storage = f"sqlite:///{tmp_path}/not-on-this-node/tuning.db"  # as a remote node sees the driver's file
    executor = RayExecutor()
    try:
        with pytest.raises(UsageError, match=r"cannot open the tuning storage .*not-on-this-node.*--storage"):
            list(executor.run([TrialTask(spec, storage, "study", 1, 0, "none", "ce", "noise none")]))
    finally:
        executor.close()


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc").is_dir(), reason="follows the driver's child processes in /proc (Linux)")
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])  # SIGTERM: `kill PID`, a scheduler's preemption
def test_ctrl_c_stops_ray_and_exits_130_with_one_line_and_ray_listens_on_loopback(tmp_path, sig):
    _ray()
    out = tmp_path / "c"
    args = [sys.executable, "-m", "losscli", "compare", "--dataset", "synthetic", "--set",
            "dataset.options={classes: 3, dim: 6, n_train: 1200, n_test: 60}", "--model", "mlp", "--losses",
            "ce,gce,mae", "--seeds", "3", "--epochs", "8", "--batch-size", "16", "--device", "cpu", "--executor", "ray",
            "--jobs", "2", "--out", str(out)]
    # as a user runs it: without the variable this module sets for its own Ray (losscli must set it)
    env = {k: v for k, v in os.environ.items() if k != "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"}
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            env=env, preexec_fn=answers_ctrl_c)
    deadline = time.time() + 120
    while time.time() < deadline and not list(out.glob("runs/*/report.yaml")) and proc.poll() is None:
        time.sleep(0.05)
    assert proc.poll() is None, proc.communicate()[1]
    family = descendants(proc.pid)
    ours = {inode: address for inode, address in listening().items() if inode in sockets_of([proc.pid, *family])}
    assert ours and set(ours.values()) <= LOOPBACK, ours  # the instance the command started: loopback only
    # a terminal sends Ctrl-C to the whole foreground group; SIGTERM goes to the driver alone, which stops Ray
    (os.killpg if sig == signal.SIGINT else os.kill)(proc.pid, sig)
    _, err = proc.communicate(timeout=90)
    assert proc.returncode == 128 + sig, err  # 130, 143
    lines = err.strip().splitlines()
    assert lines[-1].startswith("error: interrupted;") and "finished run(s) are kept" in lines[-1]
    assert not any("Traceback" in line or line.startswith("[20") for line in lines), err  # no Ray log spill
    statuses = [rundir.run_status(d) for d in (out / "runs").iterdir()]
    assert "failed" not in statuses and statuses.count("ok") >= 1
    deadline = time.time() + 20
    while time.time() < deadline and any(Path(f"/proc/{p}").exists() for p in family):
        time.sleep(0.2)
    assert not [p for p in family if Path(f"/proc/{p}").exists()], "Ray processes outlived the interrupted driver"


# --------------------------------------------------------------------------- a simulated two-node cluster (last)


def test_two_node_cluster_gives_the_local_report(tmp_path, reference, reference_dir):
    ray = _ray()
    from ray.cluster_utils import Cluster

    if ray.is_initialized():
        ray.shutdown()  # the module's single-node instance
    node = {"num_cpus": 1, "include_dashboard": False, "node_ip_address": "127.0.0.1"}
    cluster = Cluster(initialize_head=True, head_node_args=node)
    try:
        cluster.add_node(**{k: v for k, v in node.items() if k != "include_dashboard"})
        cluster.wait_for_nodes()
        logs: list[str] = []
        # joined as a user does, with --address (the executor's own ray.init), not a test's ray.init
        report = run_compare(_cfg(executor="ray", address=cluster.address), tmp_path, progress=False, log=logs.append)
        assert report["n_failed"] == 0
        _assert_same_runs(_runs(tmp_path), reference)
        assert _report(tmp_path) == _report(reference_dir)  # the report, not only its runs
        assert any(line.startswith(f"Ray cluster {cluster.address}: 2 node(s)") for line in logs), logs
        assert any("ran on 2 node(s)" in line for line in logs), logs
        assert not ray.is_initialized()  # disconnected from the cluster it joined...
        assert cluster.head_node.remaining_processes_alive()  # ...which it left running
    finally:
        ray.shutdown()
        cluster.shutdown()
