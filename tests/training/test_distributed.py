"""Multi-worker training: two real worker processes on loopback ports train a tiny model on
the example smears; they end with the same weights and only the chief publishes."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.utils.live_server import free_port
from training.pipeline.cluster import (
    ClusterConfigError,
    Task,
    current_task,
    indexed_job_tf_config,
)
from training.pipeline.distributed import weights_digest

DIGEST = re.compile(
    r"^(worker-\d) of (\d+) replicas: final weights sha256 ([0-9a-f]{64})$", re.MULTILINE
)


def example_data_set(root: Path) -> Path:
    """The eight example smears (two per class) laid out as the data set: with `--source
    train-folder` one original of each class trains and the other validates."""
    from tests.utils.images import write_example_data_set

    return write_example_data_set(root)


def worker_command(data_dir: Path, tmp_path: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "training",
        "train",
        "--strategy",
        "multi-worker",
        "--source",
        "train-folder",
        "--no-evaluate",
        "--data-dir",
        str(data_dir),
        "--store-dir",
        str(tmp_path / "store"),
        "--model-name",
        "tiny",
        "--backup-dir",
        str(tmp_path / "backup"),
        "--input-size",
        "32",
        "--epochs",
        "1",
        "--batch-size",
        "4",
        "--no-augment",
    ]


@pytest.mark.slow
def test_two_workers_agree_and_only_the_chief_publishes(tmp_path: Path) -> None:
    from model_core.store.entries import load_entry, read_manifest

    data_dir = example_data_set(tmp_path / "data")
    ports = {free_port()}
    while len(ports) < 2:  # the system may hand out the same free port twice
        ports.add(free_port())
    cluster = {"worker": [f"127.0.0.1:{port}" for port in sorted(ports)]}
    workers = []
    for index in range(2):
        tf_config = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})
        log = open(tmp_path / f"worker-{index}.log", "w+")  # noqa: SIM115 (closed below)
        workers.append(
            (
                subprocess.Popen(
                    worker_command(data_dir, tmp_path),
                    cwd=ROOT,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env={**os.environ, "TF_CONFIG": tf_config, "TF_CPP_MIN_LOG_LEVEL": "2"},
                ),
                log,
            )
        )
    outputs = []
    try:
        for process, log in workers:
            process.wait(timeout=600)
            log.seek(0)
            outputs.append(log.read())
    finally:
        for process, log in workers:
            if process.poll() is None:
                process.kill()
            log.close()
    for (process, _), output in zip(workers, outputs, strict=True):
        assert process.returncode == 0, output[-3000:]

    digests = [DIGEST.search(output).groups() for output in outputs]
    assert [name for name, _, _ in digests] == ["worker-0", "worker-1"]
    assert {replicas for _, replicas, _ in digests} == {"2"}
    assert digests[0][2] == digests[1][2], "the workers' final weights differ"

    versions = sorted((tmp_path / "store" / "tiny").iterdir())
    assert [v.name for v in versions] == ["1"], "exactly one version, from the chief"
    assert "published tiny v1" in outputs[0] and "published" not in outputs[1]
    manifest = read_manifest(versions[0])
    assert manifest.training["strategy"] == "multi-worker"
    assert manifest.training["replicas"] == 2
    # The chief validated, calibrated and evaluated the entry after training, alone.
    assert manifest.calibration is not None
    assert manifest.metrics["validation"]["count"] == 4  # one held-out original per class
    _, published = load_entry(versions[0])
    assert weights_digest(published.get_weights()) == digests[0][2]
    # Each worker kept its own backup, so a resumed run restores its own state.
    assert sorted(p.name for p in (tmp_path / "backup").iterdir()) == ["worker-0", "worker-1"]


def test_tf_config_of_each_pod_of_an_indexed_job() -> None:
    configs = [
        indexed_job_tf_config("wbc-train", "wbc-train", 3, 2222, index) for index in range(3)
    ]
    hosts = [
        "wbc-train-0.wbc-train:2222",
        "wbc-train-1.wbc-train:2222",
        "wbc-train-2.wbc-train:2222",
    ]
    assert all(config["cluster"] == {"worker": hosts} for config in configs)
    tasks = [current_task({"TF_CONFIG": json.dumps(config)}) for config in configs]
    assert [task.index for task in tasks] == [0, 1, 2]
    assert [task.is_chief for task in tasks] == [True, False, False]
    with pytest.raises(ClusterConfigError, match="outside"):
        indexed_job_tf_config("wbc-train", "wbc-train", 3, 2222, 3)


@pytest.mark.parametrize(
    "module", ["training.pipeline.cluster", "training.distributed"]
)  # the second: its name before the move, which older Job manifests run
def test_tf_config_command_reads_the_completion_index(module: str) -> None:
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            module,
            "tf-config",
            "--job",
            "j",
            "--service",
            "s",
            "--workers",
            "2",
            "--port",
            "2222",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        env={**os.environ, "JOB_COMPLETION_INDEX": "1"},
    )
    assert completed.returncode == 0, completed.stderr
    assert json.loads(completed.stdout) == {
        "cluster": {"worker": ["j-0.s:2222", "j-1.s:2222"]},
        "task": {"type": "worker", "index": 1},
    }


@pytest.mark.parametrize(
    "tf_config, message",
    [
        (None, "needs TF_CONFIG"),
        ("not json", "not a cluster and task"),
        ('{"cluster": {"worker": ["a:1"]}}', "not a cluster and task"),
        (
            '{"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": 1}}',
            "has 1 worker address",
        ),
    ],
)
def test_bad_tf_config_is_a_clear_error(tf_config, message) -> None:
    environ = {} if tf_config is None else {"TF_CONFIG": tf_config}
    with pytest.raises(ClusterConfigError, match=message):
        current_task(environ)


def test_chief_is_the_chief_task_or_worker_zero() -> None:
    with_chief = {"chief": ["c:1"], "worker": ["w:1"]}
    assert Task("chief", 0, with_chief).is_chief
    assert not Task("worker", 0, with_chief).is_chief
    assert Task("worker", 0, {"worker": ["w:1", "w:2"]}).is_chief


def test_missing_tf_config_stops_the_command_with_a_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    from training.cli import main

    monkeypatch.delenv("TF_CONFIG", raising=False)
    argv = worker_command(example_data_set(tmp_path / "data"), tmp_path)[3:]  # after -m training
    assert main(argv) == 2
    assert "needs TF_CONFIG" in capsys.readouterr().err
    assert not (tmp_path / "store").exists()
