"""config.json is read strictly: every key of its format must be there, so that a model never
loads with a default in place of what it was trained with; keys added since a format are listed
in ADDED_KEYS, and files of older formats load without them."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from attnseq.config import ADDED_KEYS, FORMAT, load_config, load_config_json, save_config_json, task_sections
from attnseq.errors import AttnseqError
from tests.conftest import ROOT

FORMAT1 = Path(__file__).with_name("config_keys_format1.txt")  # every task's keys when format 1 was current
RECIPES = {"translate": "dates", "classify": "sentiment", "chat": "chatbot_ko", "headline": "headlines",
           "speech": "yesno", "lm": "an4_lm"}  # fmt: skip


def recipe(task: str):
    return load_config(ROOT / "configs" / f"{RECIPES[task]}.yaml")


# the tasks of format 1; a task added later (lm: format 10) has no older files to read
OLD_TASKS = sorted({key.split(":", 1)[0] for key in FORMAT1.read_text().split()})


def keys_now() -> set[str]:
    return {f"{task}:{section}.{f.name}" for task, sections in task_sections().items() if task in OLD_TASKS
            for section, cls in sections.items() for f in dataclasses.fields(cls)}  # fmt: skip


def test_every_key_added_since_format_1_is_listed_with_its_format():
    added = {key.split(":", 1)[1] for key in keys_now() - set(FORMAT1.read_text().split())}
    assert added <= set(ADDED_KEYS), f"add {sorted(added - set(ADDED_KEYS))} to config.ADDED_KEYS (format {FORMAT})"
    assert all(2 <= v <= FORMAT for v in ADDED_KEYS.values())


@pytest.mark.parametrize("version", range(1, FORMAT))
@pytest.mark.parametrize("task", OLD_TASKS)
def test_an_older_format_loads_without_the_keys_added_since(task, version, tmp_path):
    path = tmp_path / "config.json"
    save_config_json(recipe(task), path)
    record = json.loads(path.read_text())
    if version == 1:
        del record["format"]  # format 1 files had no format key
    else:
        record["format"] = version
    removed = [key for key, added in ADDED_KEYS.items() if added > version
               and record.get(key.split(".")[0], {}).pop(key.split(".")[1], None) is not None]  # fmt: skip
    path.write_text(json.dumps(record))
    expected = recipe(task)  # what such a file meant: the removed keys at their defaults
    for key in removed:
        section, name = key.split(".")
        defaults = task_sections()[task][section]()
        setattr(getattr(expected, section), name, getattr(defaults, name))
    assert load_config_json(path) == expected
    if removed:  # the same file claiming the current format lacks keys it must hold
        record["format"] = FORMAT
        path.write_text(json.dumps(record))
        with pytest.raises(AttnseqError, match="is missing"):
            load_config_json(path)


def test_every_format_1_key_is_required(tmp_path):
    path = tmp_path / "config.json"
    for task in sorted(task_sections()):
        save_config_json(recipe(task), path)
        record = json.loads(path.read_text())
        for section, cls in task_sections()[task].items():
            for f in dataclasses.fields(cls):
                if f"{section}.{f.name}" in ADDED_KEYS:
                    continue
                broken = json.loads(json.dumps(record))
                del broken[section][f.name]
                path.write_text(json.dumps(broken))
                with pytest.raises(AttnseqError, match=rf"'{section}\.{f.name}' is missing"):
                    load_config_json(path)
