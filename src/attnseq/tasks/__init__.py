"""The task registry: one module per application, each with one `attnseq.contracts.Task` subclass.

`get_task(name)` is the only place a task is found by its name; `register` adds one. A task of
one's own, defined outside this package, works through the CLI, the trainer and the server once
registered: by calling `register(MyTask)`, or, for the `attnseq` command, by naming it in an
installed package's entry points (group `attnseq.tasks`, e.g. `mytask = "mypackage.tasks:MyTask"`
under `[project.entry-points."attnseq.tasks"]`), which the registry loads on first use.
"""

from __future__ import annotations

import importlib.metadata

from attnseq.contracts import Task
from attnseq.tasks.chatbot import ChatTask
from attnseq.tasks.classify import ClassifyTask
from attnseq.tasks.headlines import HeadlineTask
from attnseq.tasks.lm import LMTask
from attnseq.tasks.speech import SpeechTask
from attnseq.tasks.translation import TranslationTask

TASKS: dict[str, type[Task]] = {}


def register(task: type[Task]) -> type[Task]:
    """Add a Task subclass under its `name` (usable as a class decorator); returns it."""
    TASKS[task.name] = task
    return task


for _task in (TranslationTask, ClassifyTask, SpeechTask, ChatTask, HeadlineTask, LMTask):
    register(_task)


_PLUGINS_LOADED = False


def load_plugins() -> None:
    """Register the tasks installed packages name under the entry-point group `attnseq.tasks` (once)."""
    global _PLUGINS_LOADED
    if _PLUGINS_LOADED:
        return
    _PLUGINS_LOADED = True
    for entry in importlib.metadata.entry_points(group="attnseq.tasks"):
        task = entry.load()
        if not (isinstance(task, type) and issubclass(task, Task)) or entry.name != getattr(task, "name", None):
            raise TypeError(f"entry point attnseq.tasks {entry.name} = {entry.value}: not a Task subclass named "
                            f"{entry.name!r}")  # fmt: skip
        register(task)


def known_tasks() -> dict[str, type[Task]]:
    """Every registered task by name, the installed packages' included."""
    load_plugins()
    return TASKS


def get_task(name: str) -> Task:
    """The task a config's `task:` names."""
    if name not in TASKS:
        load_plugins()
    try:
        return TASKS[name]()
    except KeyError:
        raise ValueError(f"unknown task {name!r}") from None  # config validation names the choices first
