"""Training: state, optimizer, steps, checkpoints, loop."""

from ssm.train.checkpoint import CheckpointWarning, Checkpoints
from ssm.train.errors import DataMissing, Preempted, RunDirMismatch, RunDirUnusable, RunError, TrainingDiverged
from ssm.train.loop import Run, build, train
from ssm.train.optimizer import make_optimizer, param_labels, schedule
from ssm.train.state import TrainState, init_state
from ssm.train.step import make_eval_step, make_train_step

__all__ = [
    "CheckpointWarning", "Checkpoints", "DataMissing", "Preempted", "Run", "RunDirMismatch", "RunDirUnusable",
    "RunError", "TrainState", "TrainingDiverged", "build", "init_state",
    "make_eval_step", "make_optimizer", "make_train_step", "param_labels", "schedule", "train",
]  # fmt: skip
