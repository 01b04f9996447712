"""The task registry: one module per application, each with one `attnseq.contracts.Task` subclass.

`get_task(name)` is the only place a task is found by its name; `register` adds one (a task of
one's own, defined outside this package, works through the CLI, the trainer and the server once
registered).
"""

from __future__ import annotations

from attnseq.contracts import Task
from attnseq.tasks.chatbot import ChatTask
from attnseq.tasks.classify import ClassifyTask
from attnseq.tasks.headlines import HeadlineTask
from attnseq.tasks.speech import SpeechTask
from attnseq.tasks.translation import TranslationTask

TASKS: dict[str, type[Task]] = {}


def register(task: type[Task]) -> type[Task]:
    """Add a Task subclass under its `name` (usable as a class decorator); returns it."""
    TASKS[task.name] = task
    return task


for _task in (TranslationTask, ClassifyTask, SpeechTask, ChatTask, HeadlineTask):
    register(_task)


def get_task(name: str) -> Task:
    """The task a config's `task:` names."""
    try:
        return TASKS[name]()
    except KeyError:
        raise ValueError(f"unknown task {name!r}") from None  # config validation names the choices first
