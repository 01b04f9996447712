"""A saved model is a directory: config.json (which names its task), model.safetensors, and the
task's asset files (translation: src_vocab.json, tgt_vocab.json, and src.spm.model / tgt.spm.model
for sides tokenized by sentencepiece; classify: vocab.json, labels.json, spm.model). The task
rebuilds the model from them (`attnseq.contracts.Task`); `attnseq.predict.load` finds the task by
the name config.json gives it.

Loading never unpickles: weights are safetensors, the rest is JSON. The state needed to resume
training (optimizer, scheduler, RNG, position) sits beside it in trainer_state.pt, which holds only
tensors and plain containers and is read with `torch.load(weights_only=True)`.

Every file is written to a temporary name and moved into place with `os.replace`; a whole
directory is written beside its target and swapped in, so a crash leaves the old one or the new
one, never a mixture.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import pickle
import shutil
import tempfile
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from attnseq.config_record import CHECKSUMS, parse_saved, read_config_record, save_config_json
from attnseq.contracts import Task
from attnseq.errors import AttnseqError
from attnseq.fast.accelerate import accelerate
from attnseq.fileio import fsync_path, umask
from attnseq.runtime import resolve_device
from attnseq.schema import Config, validate_for

CONFIG, WEIGHTS, TRAINER_STATE = "config.json", "model.safetensors", "trainer_state.pt"
METRICS = "metrics.json"  # the validation scores of these weights, where training wrote them


def _old(target: Path) -> Path:
    return target.with_name(target.name + ".old")


def recover_interrupted_swap(target: Path) -> None:
    """If a crash fell between the two renames of `replace_dir`, put target.old back."""
    old = _old(target)
    if not target.exists() and old.exists():
        os.replace(old, target)


def replace_dir(tmp_dir: Path, target: Path) -> None:
    """Swap a fully written `tmp_dir` into `target` (the old one is kept as target.old until done)."""
    recover_interrupted_swap(target)
    old = _old(target)
    if old.exists():
        shutil.rmtree(old)
    if target.exists():
        os.replace(target, old)
    os.replace(tmp_dir, target)
    if old.exists():
        shutil.rmtree(old)


def tied_keys(model: nn.Module) -> list[str]:
    """state_dict keys that are the same tensor as an earlier key (saved once)."""
    seen, tied = {}, []
    for key, value in model.state_dict(keep_vars=True).items():
        if id(value) in seen:
            tied.append(key)
        seen.setdefault(id(value), key)
    return tied


def save_model_dir(
    directory: Path,
    *,
    model: nn.Module,
    config: Config,
    assets,
    trainer_state: dict | None = None,
    resolved: dict[str, str] | None = None,
    metrics: dict | None = None,
) -> None:
    """Write a complete model directory atomically: config.json, the task's `assets.files()` and
    the weights (optionally with resumable trainer state); `resolved` goes into config.json as a
    record of what `auto` settings ran as, `metrics` (the validation of these weights) into
    metrics.json."""
    directory = Path(directory)
    writing = directory  # the file being written when a storage error strikes
    tmp = None
    try:
        directory.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=directory.parent, prefix=f".{directory.name}.", suffix=".tmp"))
        os.chmod(tmp, 0o777 & ~umask())
        for name, data in assets.files().items():
            writing = directory / name
            (tmp / name).write_bytes(data)
        if metrics is not None:
            writing = directory / METRICS
            (tmp / METRICS).write_text(json.dumps(metrics, indent=1) + "\n", encoding="utf-8")
        tied = set(tied_keys(model))  # safetensors stores each tensor once; tying is rebuilt from config
        weights = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items() if k not in tied}
        writing = directory / WEIGHTS
        save_file(weights, str(tmp / WEIGHTS), metadata={"format": "pt", "library": "attnseq"})
        if trainer_state is not None:
            writing = directory / TRAINER_STATE
            torch.save(trainer_state, tmp / TRAINER_STATE)
        checksums = {}
        for f in sorted(tmp.iterdir()):
            writing = directory / f.name
            os.chmod(f, 0o666 & ~umask())  # some writers (safetensors, mkstemp) make files private
            fsync_path(f)  # on disk before the swap, so even a power cut leaves a whole directory
            checksums[f.name] = sha256_file(f)
        writing = directory / CONFIG  # last: it holds the others' checksums
        save_config_json(config, tmp / CONFIG, resolved=resolved, checksums=checksums)
        writing = directory
        replace_dir(tmp, directory)
    except BaseException as exc:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(exc, (OSError, RuntimeError, SafetensorError)) and not isinstance(exc, AttnseqError):
            reason = storage_reason(exc)
            raise AttnseqError(f"{writing}: could not write it ({reason}); {directory} is unchanged") from None
        raise


def sha256_file(path: Path) -> str:
    with open(path, "rb") as f:
        return "sha256:" + hashlib.file_digest(f, "sha256").hexdigest()


def verify_model_dir(
    directory: Path, *, skip: tuple[str, ...] = (), fix: str = "copy the model directory whole again"
) -> None:
    """Check every file config.json lists against its SHA-256 (directories written before
    checksums existed list none and pass).

    Raises:
        AttnseqError: naming the first file that is missing, truncated or altered.
    """
    directory = Path(directory)
    listed = read_config_record(directory / CONFIG).get(CHECKSUMS) or {}
    if not isinstance(listed, dict):
        raise AttnseqError(f"{directory / CONFIG}: '{CHECKSUMS}' must map file names to checksums")
    for name, digest in listed.items():
        if name in skip:
            continue
        path = directory / str(name)
        if "/" in str(name) or not path.is_file():
            raise AttnseqError(f"{path}: missing; the model directory is incomplete (copy it whole)")
        if sha256_file(path) != digest:
            raise AttnseqError(f"{path}: does not match its checksum in config.json (truncated or altered); {fix}")


def storage_reason(exc: BaseException) -> str:
    """What a storage error of any library says, in a few words (OSError's strerror, else its first line)."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    text = str(exc).strip().splitlines()
    return text[0][:160] if text else type(exc).__name__


def resolve_model_dir(path: str | Path) -> Path:
    """Accept a model directory, or a training run directory (then its best/ model)."""
    path = Path(path)
    candidates = (path, path / "best", path / "last")
    for directory in candidates:
        if (directory / WEIGHTS).is_file():
            return directory
    for directory in candidates:  # X.old stands in for X after a crash between replace_dir's renames
        if not directory.exists() and (_old(directory) / WEIGHTS).is_file():
            return _old(directory)
    raise AttnseqError(
        f"{path}: no {WEIGHTS} here or in {path}/best; give a model directory written by `attnseq train --out DIR`"
    )


def load_weights(model: nn.Module, directory: Path) -> None:
    """Load a model directory's weights into a model built from its config."""
    try:
        state = load_file(str(Path(directory) / WEIGHTS))
        missing, unexpected = model.load_state_dict(state, strict=False)
        tied = set(tied_keys(model))
        if set(missing) != tied or unexpected:
            raise RuntimeError(f"missing keys {sorted(set(missing) - tied)}, unexpected {unexpected}")
    except (RuntimeError, OSError, SafetensorError) as exc:
        msg = str(exc).splitlines()[0]
        raise AttnseqError(f"{Path(directory) / WEIGHTS}: does not match config.json ({msg})") from None


def load_model_dir(path: str | Path, *, task: Task, device: str | torch.device = "cpu"):
    """Rebuild a model from its directory alone, through `task` (the one its config.json names).
    Returns (model in eval mode, config, assets).

    Raises:
        AttnseqError: the directory holds a model of another task, or is incomplete or altered.
    """
    device = resolve_device(str(device))
    directory = resolve_model_dir(path)
    config = read_model_config(directory, task)
    verify_model_dir(directory, skip=(TRAINER_STATE,))  # trainer_state.pt is checked when a run resumes
    assets = task.load_assets(config, directory)
    model = build_checked(task, config, assets, device=device, training=False, where=str(directory / CONFIG))
    load_weights(model, directory)
    return model.to(device).eval(), config, assets


def read_model_config(directory: Path, task: Task) -> Config:
    """A model directory's config.json, read strictly as a config of `task` and checked by it."""
    path = Path(directory) / CONFIG
    record = read_config_record(path)
    if "task" in record and record["task"] != task.name:  # without the key, parse_saved says it is missing
        raise AttnseqError(f"{directory}: holds a {record.get('task')} model, not a {task.name} model")
    return validate_for(parse_saved(path, {task.name: task}, record=record), task, str(path))


def device_memory(device: torch.device) -> int:
    """Bytes of memory a model on `device` can use at most: the GPU's, or the machine's RAM."""
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).total_memory
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 0  # unknown: no check


def build_checked(task: Task, config: Config, assets, *, device: torch.device, training: bool, where: str):
    """`task.build_model` with the fast paths its pieces have (`fast.accelerate`), after building it
    once on the meta device (no memory) to check that its parameters fit: 4 bytes each for the
    weights, 16 for `training` (weights, gradients and the two Adam moments).

    Raises:
        AttnseqError: naming the model's size settings when it cannot fit.
    """
    memory = device_memory(device)
    try:
        with torch.device("meta"):
            count = sum(p.numel() for p in task.build_model(config, assets).parameters())
    except Exception:  # noqa: BLE001 - a builder that needs real tensors: the real build below decides
        count = 0
    need = count * (16 if training else 4)
    if memory and need > memory:
        sizes = sorted(((v, f"model.{k}") for k, v in dataclasses.asdict(config.model).items()
                        if isinstance(v, int) and not isinstance(v, bool)), reverse=True)  # fmt: skip
        large = [(v, k) for v, k in sizes if v > 4096] or sizes[:1]  # sizes of an everyday model stay below
        biggest = ", ".join(f"{k} = {v:,}" for v, k in large)
        raise AttnseqError(
            f"{where}: the model would have {count:,} parameters, {need / 2**30:,.1f} GiB "
            f"{'with their gradients and Adam state' if training else 'of weights'}, more than the "
            f"{memory / 2**30:,.1f} GiB of {device.type} memory here; lower the model's sizes ({biggest})"
        )
    return accelerate(task.build_model(config, assets))  # the fast paths its pieces have (fast/)


def load_metrics(path: str | Path) -> dict:
    """The validation scores saved with a model directory's weights ({} when training wrote none)."""
    try:
        data = json.loads((resolve_model_dir(path) / METRICS).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def load_trainer_state(directory: Path) -> dict:
    path = Path(directory) / TRAINER_STATE
    if not path.is_file():
        raise AttnseqError(f"{path}: not found; --resume needs a run directory written by `attnseq train`")
    try:
        state = torch.load(path, weights_only=True, map_location="cpu")
    except (RuntimeError, OSError, EOFError, pickle.UnpicklingError) as exc:
        msg = (str(exc).splitlines() or [type(exc).__name__])[0].split(". ")[0][:160]  # torch's first sentence
        raise AttnseqError(f"{path}: unreadable ({msg}); the run cannot resume, start a new one") from None
    problem = trainer_state_problem(state)
    if problem:
        raise AttnseqError(f"{path}: not a trainer state ({problem}); the run cannot resume, start a new one")
    return state


def trainer_state_problem(state) -> str:
    """What is wrong with the structure of a loaded trainer_state.pt ("" when nothing)."""
    if not isinstance(state, dict):
        return f"a {type(state).__name__}, not a mapping"
    for key, kind in (("optimizer", dict), ("scheduler", dict), ("progress", dict), ("torch_rng", torch.Tensor)):
        if not isinstance(state.get(key), kind):
            return f"'{key}' is missing or not a {kind.__name__}"
    if not isinstance(state["optimizer"].get("state"), dict) or not isinstance(
        state["optimizer"].get("param_groups"), list
    ):
        return "'optimizer' lacks its state and param_groups"
    rank_rng = state.get("rank_rng")
    if rank_rng is not None and not (
        isinstance(rank_rng, list) and all(isinstance(r, dict) and isinstance(r.get("torch_rng"), torch.Tensor)
                                           for r in rank_rng)
    ):  # fmt: skip
        return "'rank_rng' is not a list of RNG states"
    return ""


def model_task(path: str | Path) -> str:
    """The name of the task a model directory (or a run's best model) was trained for."""
    directory = resolve_model_dir(path)
    task = read_config_record(directory / CONFIG).get("task")
    if not isinstance(task, str):
        raise AttnseqError(
            f"{directory / CONFIG}: 'task' is missing; a saved model's config names its task (restore the key)"
        )
    return task


def load_predictor(path: str | Path, *, task: Task, device: str = "cpu"):
    """The predictor of a model directory (or of a training run directory's best model) of `task`."""
    model, config, assets = load_model_dir(path, task=task, device=device)
    return task.predictor(model, config, assets, device=device)
