"""The cluster a multi-worker training runs on: this worker's place in TF_CONFIG, the
MultiWorkerMirroredStrategy over it, and the TF_CONFIG of one pod of a Kubernetes Indexed
Job: `python -m training.pipeline.cluster tf-config ...`
(deploy/kubernetes/training-job.yaml). What each worker trains is `distributed.py`."""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass
from functools import lru_cache

TF_CONFIG = "TF_CONFIG"


class ClusterConfigError(ValueError):
    """TF_CONFIG is missing or does not describe this worker's place in a cluster."""


@dataclass(frozen=True)
class Task:
    """This process's place in the cluster: its type ("worker" or "chief") and index."""

    type: str
    index: int
    cluster: dict[str, list[str]]

    @property
    def is_chief(self) -> bool:
        """TensorFlow's convention: the "chief" task, or worker 0 when there is none."""
        if "chief" in self.cluster:
            return self.type == "chief"
        return self.type == "worker" and self.index == 0

    @property
    def name(self) -> str:
        return f"{self.type}-{self.index}"


def current_task(environ: dict[str, str] | os._Environ = os.environ) -> Task:
    """This process's task, read from TF_CONFIG."""
    text = environ.get(TF_CONFIG)
    if not text:
        raise ClusterConfigError(
            f'--strategy multi-worker needs {TF_CONFIG}, e.g. \'{{"cluster": {{"worker": '
            '["host-0:2222", "host-1:2222"]}, "task": {"type": "worker", '
            '"index": 0}}\' (the same cluster on every worker, each its own index)'
        )
    try:
        config = json.loads(text)
        cluster, task = config["cluster"], config["task"]
        found = Task(str(task["type"]), int(task["index"]), dict(cluster))
    except (ValueError, KeyError, TypeError) as error:
        raise ClusterConfigError(
            f"{TF_CONFIG} is not a cluster and task: {error}; got {text[:200]!r}"
        ) from error
    if not 0 <= found.index < len(cluster.get(found.type, [])):
        raise ClusterConfigError(
            f"{TF_CONFIG} names task {found.name}, but its cluster has "
            f"{len(cluster.get(found.type, []))} {found.type} address(es)"
        )
    return found


@lru_cache(maxsize=1)
def multi_worker_strategy():
    """The one MultiWorkerMirroredStrategy of this process. Collective ops must be set up
    before TensorFlow runs anything else, so this is created first, then reused by
    training.pipeline.train.make_strategy."""
    import tensorflow as tf

    current_task()  # a clear error before TensorFlow's own
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    # Keras 3's fit() has two reductions that MultiWorkerMirroredStrategy.reduce refuses with
    # two or more workers (keras-team/keras#20585): the first (x, y) batch as one nested
    # value (it takes single values only), and each scalar metric along axis 0 (a scalar
    # has none). Reduce each value of a nest, and scalars across replicas only: what Keras
    # means, and what it gets from the other strategies.
    reduce_one = strategy.reduce

    def reduce_each(reduce_op, value, axis=None):
        def reduce_value(item):
            scalar = all(
                local.shape.rank == 0 for local in strategy.experimental_local_results(item)
            )
            return reduce_one(reduce_op, item, axis=None if scalar else axis)

        return tf.nest.map_structure(reduce_value, value)

    strategy.reduce = reduce_each
    return strategy


def indexed_job_tf_config(job: str, service: str, workers: int, port: int, index: int) -> dict:
    """TF_CONFIG of pod `index` of an Indexed Job whose pods are `<job>-<i>` under the
    headless Service `service` (the pod template's subdomain)."""
    if not 0 <= index < workers:
        raise ClusterConfigError(f"completion index {index} is outside 0..{workers - 1}")
    hosts = [f"{job}-{i}.{service}:{port}" for i in range(workers)]
    return {"cluster": {"worker": hosts}, "task": {"type": "worker", "index": index}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.pipeline.cluster")
    commands = parser.add_subparsers(dest="command", required=True)
    tf_config = commands.add_parser(
        "tf-config", help="print the TF_CONFIG of one pod of an Indexed Job"
    )
    tf_config.add_argument("--job", required=True, help="the Job's name")
    tf_config.add_argument("--service", required=True, help="the headless Service's name")
    tf_config.add_argument("--workers", type=int, required=True, help="the Job's completions")
    tf_config.add_argument("--port", type=int, default=2222, help="the workers' port")
    tf_config.add_argument(
        "--index", type=int, default=None, help="this pod's index (default: $JOB_COMPLETION_INDEX)"
    )
    args = parser.parse_args(argv)
    index = args.index if args.index is not None else os.environ.get("JOB_COMPLETION_INDEX")
    try:
        if index is None:
            raise ClusterConfigError(
                "no --index and no JOB_COMPLETION_INDEX (set by an Indexed Job)"
            )
        config = indexed_job_tf_config(args.job, args.service, args.workers, args.port, int(index))
    except (ClusterConfigError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(json.dumps(config))
    return 0


if __name__ == "__main__":
    sys.exit(main())
