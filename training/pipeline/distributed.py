"""Training on several machines: `python -m training train --strategy multi-worker` runs the
same training on every worker under tf.distribute.MultiWorkerMirroredStrategy, described by
the TF_CONFIG environment variable (`cluster.py`); gradients are all-reduced, so every worker
ends with the same weights, and only the chief publishes them to the model store."""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

from training.pipeline.cluster import current_task, multi_worker_strategy
from training.pipeline.config import TrainConfig
from training.pipeline.train import TrainResult, train


def weights_digest(weights: list) -> str:
    """SHA-256 of a model's weights, in order: equal on every worker after a synced run."""
    digest = hashlib.sha256()
    for array in weights:
        digest.update(array.tobytes())
    return digest.hexdigest()


def train_on_workers(config: TrainConfig) -> TrainResult | None:
    """Train this worker's share; return the TrainResult to publish on the chief, None on
    the other workers. Each worker keeps its BackupAndRestore files apart (worker-<i>/)."""
    task = current_task()
    strategy = multi_worker_strategy()
    if config.backup_dir is not None:
        config = dataclasses.replace(
            config, backup_dir=Path(config.backup_dir) / task.name / "backup"
        )
    result = train(config)
    average_over_workers(strategy, result.model.non_trainable_weights)
    print(
        f"{task.name} of {strategy.num_replicas_in_sync} replicas: final weights sha256 "
        f"{weights_digest(result.model.get_weights())}",
        flush=True,
    )
    if not task.is_chief:
        print(f"{task.name} is not the chief: the chief publishes", flush=True)
        return None
    return result


def average_over_workers(strategy, variables: list) -> None:
    """Replace each variable by its mean over all workers (a collective all-reduce, so every
    worker ends with the same values). Gradients are all-reduced, so the trainable weights
    agree already; batch normalisation's moving mean and variance are not: each worker
    follows its own shard of the batches. Their mean over the workers is what Keras 2 read
    from such sync-on-read variables."""
    import tensorflow as tf

    local_values = [variable.numpy() for variable in variables]
    per_replica = strategy.run(lambda: [tf.constant(value) for value in local_values])
    for variable, value in zip(variables, per_replica, strict=True):
        variable.assign(strategy.reduce("MEAN", value, axis=None))
