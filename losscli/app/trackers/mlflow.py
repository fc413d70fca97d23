"""MLflow tracking through ``MlflowClient`` (explicit run ids: no global active run, safe in workers).

Default store: ``./mlruns`` (a local file store, the directory ``mlflow ui`` reads). MLflow 3 keeps
the file store in maintenance mode and refuses it unless ``MLFLOW_ALLOW_FILE_STORE`` is set; losscli
sets it for the file store it was asked to use (give ``--tracking-uri sqlite:///mlflow.db`` or a
server URL for a database). A run's MLflow id is kept in ``RUN_DIR/mlflow_run_id``, so a resumed
``train`` continues the same MLflow run instead of starting a second one.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from pathlib import Path
from typing import Callable

from losscli.app.trackers.base import TrackerConfig, final_metrics, flat_params
from losscli.errors import UsageError

RUN_ID_FILE = "mlflow_run_id"
ARTIFACTS = ("report.yaml", "report.md", "config.yaml", "metrics.jsonl")


def _uri(uri: str | None) -> str:
    if uri is None:
        return Path("mlruns").resolve().as_uri()
    if "://" not in uri and not uri.startswith("file:"):  # a plain directory is a file store
        return Path(uri).expanduser().resolve().as_uri()
    return uri


def _setup(uri: str) -> None:
    if uri.startswith("file:"):
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    # an unreachable server is one clear line soon, not minutes of silent retries
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")
    logging.getLogger("mlflow").setLevel(logging.WARNING)  # its INFO lines would interleave with ours


def _client(uri: str):
    _setup(uri)
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


def prepare_mlflow(cfg: TrackerConfig, log: Callable[[str], None] | None = None) -> TrackerConfig:
    uri = _uri(cfg.uri)
    try:
        client = _client(uri)
        exp = client.get_experiment_by_name(cfg.experiment)
        exp_id = exp.experiment_id if exp is not None else client.create_experiment(cfg.experiment)
    except Exception as exc:  # noqa: BLE001 - a bad URI or an unreachable server: one line, before training
        first = " ".join(str(exc).split())[:200]
        raise UsageError(f"mlflow: cannot use tracking URI {uri} ({type(exc).__name__}: {first})") from None
    if log:
        log(f"mlflow: experiment {cfg.experiment!r} at {uri}")
    return dataclasses.replace(cfg, uri=uri, experiment_id=exp_id)


class MlflowRun:
    def __init__(self, cfg: TrackerConfig, name: str, tags: dict[str, str], run_dir: Path):
        self.cfg, self.name, self.tags, self.run_dir = cfg, name, tags, Path(run_dir)
        self.client = None
        self.run_id: str | None = None

    def started(self, resolved: dict, start_epoch: int) -> None:
        from mlflow.entities import Param, RunTag

        self.client = _client(self.cfg.uri)
        id_file = self.run_dir / RUN_ID_FILE
        if start_epoch and id_file.is_file():  # resumed: the same MLflow run goes on
            self.run_id = id_file.read_text(encoding="utf-8").strip()
            self.client.update_run(self.run_id, status="RUNNING")
            return
        run = self.client.create_run(self.cfg.experiment_id, run_name=self.name, tags=self.tags)
        self.run_id = run.info.run_id
        from losscli.atomic import atomic_write_text

        atomic_write_text(id_file, self.run_id + "\n")
        params = [Param(k, v) for k, v in flat_params(resolved).items()]
        for i in range(0, len(params), 100):  # MLflow takes at most 100 parameters per batch
            self.client.log_batch(self.run_id, params=params[i:i + 100])
        self.client.log_batch(self.run_id, tags=[RunTag("mlflow.runName", self.name)])

    def epoch(self, row: dict) -> None:
        from mlflow.entities import Metric

        now, step = int(time.time() * 1000), int(row["epoch"])
        metrics = [Metric(k, float(v), now, step) for k, v in row.items()
                   if k != "epoch" and isinstance(v, (int, float)) and not isinstance(v, bool) and v == v]
        self.client.log_batch(self.run_id, metrics=metrics)

    def finished(self, report: dict) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        step = int(report["history"][-1]["epoch"]) if report.get("history") else 0
        metrics = [Metric(f"final_{k}", v, now, step) for k, v in final_metrics(report).items()]
        if metrics:
            self.client.log_batch(self.run_id, metrics=metrics)
        self.client.set_tag(self.run_id, "losscli.status", report.get("status", ""))
        for name in ARTIFACTS:
            if (self.run_dir / name).is_file():
                self.client.log_artifact(self.run_id, str(self.run_dir / name))
        self.client.set_terminated(self.run_id, status="FINISHED" if report.get("status") == "ok" else "FAILED")

    def close(self) -> None:
        if self.client is not None and self.run_id is not None:
            self.client.set_terminated(self.run_id, status="FAILED")
