"""What a saved model does: its config.json's "task", read the same way by the server, the CLI and the page.

Every trained model's config.json names its ``family`` (the architecture) and its ``task`` (what it was trained
for, set by the task's ``model_config()``):

    family        task (config.json)                       default when config.json has no "task"
    translation   translation, summarisation               translation
    encoder       classification, mlm, qa, embedding       classification with num_labels > 0, else embedding
    lm            lm                                       lm
    vit           image-classification                     image-classification

Models saved before "task" existed have none; ``model_task`` gives them their family's old default, so they are
served and used exactly as before.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

DEFAULT_FAMILY = "translation"  # config.json without "family": the first models Rosetta saved were translators
TASKS = {
    "translation": ("translation", "summarisation"),
    "encoder": ("classification", "mlm", "qa", "embedding"),
    "lm": ("lm",),
    "vit": ("image-classification",),
}


def model_family(info: Mapping[str, Any]) -> str:
    """The ``family`` of the model whose config.json is ``info`` (``DEFAULT_FAMILY`` when it names none)."""
    return info.get("family", DEFAULT_FAMILY)


def default_task(family: str, num_labels: int = 0) -> str:
    """The task a model of ``family`` had before config.json named one."""
    if family == "encoder":
        return "classification" if num_labels > 0 else "embedding"
    if family not in TASKS:
        raise ValueError(f"unknown model family {family!r}; known: {', '.join(TASKS)}")
    return TASKS[family][0]


def model_task(info: Mapping[str, Any]) -> str:
    """The task of the model whose config.json is ``info`` (a missing "family" is "translation", as everywhere).

    >>> model_task({"family": "encoder", "num_labels": 2})
    'classification'
    >>> model_task({"family": "translation", "task": "summarisation"})
    'summarisation'
    """
    family = model_family(info)
    task = info.get("task")
    if task is None:
        return default_task(family, int(info.get("num_labels") or 0))
    if not isinstance(task, str) or not task:
        raise ValueError(f'config.json: "task" should be a name such as "classification", got {task!r}')
    known = TASKS.get(family)
    if known is not None and task not in known:
        raise ValueError(f'config.json: task {task!r} does not fit family {family!r} (its tasks: '
                         f'{", ".join(known)}); fix the "task" or "family" key')
    return task
