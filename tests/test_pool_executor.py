"""The pool executor leaves the driver's environment as it found it: only multiprocessing's
resource tracker gets the warning filter that keeps Ctrl-C's exit to one line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
QUIET = "ignore::UserWarning:multiprocessing.resource_tracker"


@dataclass
class Echo:
    """A task as the pool runs it (in a worker): returns its value."""

    value: int

    def execute(self, data_cache=None, log=None) -> int:
        return self.value


# in a fresh interpreter: whether the tracker was already started (without the filter) by
# something else in the test process must not matter
SCRIPT = """
import json, os
from multiprocessing import resource_tracker
from losscli.app.executors.pool import PoolExecutor
from tests.test_pool_executor import Echo

before = dict(os.environ)
executor = PoolExecutor(jobs=1)
try:
    values = sorted(executor.run([Echo(1), Echo(2), Echo(3)]))
finally:
    executor.close()
tracker = resource_tracker._resource_tracker._pid
with open(f"/proc/{tracker}/environ", "rb") as f:
    tracker_env = dict(e.decode().split("=", 1) for e in f.read().split(b"\\0") if b"=" in e)
print(json.dumps({"values": values, "changed": sorted(k for k in set(before) | set(os.environ)
                                                       if before.get(k) != os.environ.get(k)),
                  "after": os.environ.get("PYTHONWARNINGS"), "tracker": tracker_env.get("PYTHONWARNINGS")}))
"""


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads the resource tracker's environment in /proc (Linux)")
@pytest.mark.parametrize("user_filter", [None, "default::DeprecationWarning"])
def test_pool_leaves_the_driver_environment_alone_and_quiets_only_the_resource_tracker(user_filter):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONWARNINGS"}
    env["PYTHONPATH"] = os.pathsep.join(x for x in (str(ROOT), env.get("PYTHONPATH")) if x)
    if user_filter:
        env["PYTHONWARNINGS"] = user_filter
    done = subprocess.run([sys.executable, "-c", SCRIPT], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    got = json.loads(done.stdout.strip().splitlines()[-1])
    assert got["values"] == [1, 2, 3]
    assert got["changed"] == [] and got["after"] == user_filter  # the driver: untouched, the user's filter kept
    assert got["tracker"].split(",") == [x for x in (user_filter, QUIET) if x]  # the tracker: the user's and ours


def test_explicit_jobs_never_exceed_the_tasks():
    """``--jobs 1000000000`` announced "running 4 tasks in 1000000000 worker processes" and split the CPU's threads
    among a billion workers (one each); a worker beyond the task count has nothing to do."""
    from losscli.app.compare.plan import resolve_jobs

    assert resolve_jobs(10**9, "cpu", 4) == 4
    assert resolve_jobs(2, "cpu", 60) == 2
    assert resolve_jobs(3, "cpu", 0) == 1
