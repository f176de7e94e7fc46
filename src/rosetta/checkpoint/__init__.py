"""Checkpoints: atomic directories of safetensors + JSON (``files``) and the run-folder layout (``layout``).

Read by training, decoding, the server and the CLI alike; imports nothing else of Rosetta.
"""

from rosetta.checkpoint.files import (
    CONFIG_FILE,
    MANIFEST_FILE,
    MODEL_FILE,
    OPTIMIZER_FILE,
    PICKLE_SUFFIXES,
    TRAINER_STATE_FILE,
    CheckpointError,
    CheckpointWriteError,
    atomic_write_text,
    average_checkpoints,
    load_trainer_state,
    load_weights,
    optimizer_from_tensors,
    optimizer_to_tensors,
    pickle_weights,
    read_config,
    refuse_pickle,
    remove_leftovers,
    save_checkpoint,
    state_dict_for_saving,
    verify_checkpoint,
    write_error,
    write_manifest,
)
from rosetta.checkpoint.layout import (
    BEST,
    CHECKPOINTS_DIR,
    FINAL_DIR,
    LATEST,
    METRICS_FILE,
    RECIPE_FILE,
    checkpoints_dir,
    has_checkpoint,
    has_final_model,
    marked_checkpoint,
    resolve_model_dir,
    step_name,
)
from rosetta.checkpoint.task import DEFAULT_FAMILY, TASKS, default_task, model_family, model_task

__all__ = [
    "BEST", "CHECKPOINTS_DIR", "CONFIG_FILE", "DEFAULT_FAMILY", "FINAL_DIR", "LATEST", "MANIFEST_FILE", "METRICS_FILE",
    "MODEL_FILE", "OPTIMIZER_FILE", "PICKLE_SUFFIXES", "RECIPE_FILE", "TASKS", "TRAINER_STATE_FILE", "CheckpointError",
    "CheckpointWriteError", "atomic_write_text", "average_checkpoints", "checkpoints_dir", "default_task",
    "has_checkpoint", "has_final_model", "load_trainer_state", "load_weights", "marked_checkpoint", "model_family",
    "model_task", "optimizer_from_tensors", "optimizer_to_tensors", "pickle_weights", "read_config", "refuse_pickle",
    "remove_leftovers", "resolve_model_dir", "save_checkpoint", "state_dict_for_saving", "step_name",
    "verify_checkpoint", "write_error", "write_manifest",
]
