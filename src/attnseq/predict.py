"""Loading a trained model for use: what the CLI, the server and Python users call.

`load(dir)` reads the task a model directory's config.json names, finds it in the registry
(`attnseq.tasks`) and returns that task's predictor (`attnseq.contracts.Predictor`): a
`Translator`, a `Classifier`, a `Transcriber`, ... Each predictor class's `from_pretrained` is the
same call with its own task.
"""

from __future__ import annotations

from pathlib import Path

from attnseq import checkpoint
from attnseq.checkpoint import load_predictor, model_task
from attnseq.errors import AttnseqError
from attnseq.runtime import resolve_device
from attnseq.tasks import get_task, known_tasks


def task_of(path: str | Path):
    """The registered task of a model directory (or of a training run directory's best model)."""
    name = model_task(path)
    if name not in known_tasks():
        raise AttnseqError(f"{path}: holds a model of task {name!r}, which this attnseq does not know "
                           f"(it knows {', '.join(known_tasks())}); upgrade attnseq or register that task")  # fmt: skip
    return get_task(name)


def load_model_dir(path: str | Path, *, device: str = "cpu"):
    """(model in eval mode, config, assets) of a model directory, through the task it names."""
    return checkpoint.load_model_dir(path, task=task_of(path), device=device)


def load(path: str | Path, *, device: str = "cpu", expect: type | None = None, what: str = ""):
    """The predictor of a model directory (or of a training run directory's best model), through
    its task. With `expect`, a predictor of another kind is an AttnseqError saying the directory
    holds `what`'s opposite (e.g. "holds a classify model, not a translation model")."""
    return load_with_task(path, device=device, expect=expect, what=what)[0]


def load_with_task(path: str | Path, *, device: str = "cpu", expect: type | None = None, what: str = ""):
    """`load`, and the task the directory names: (predictor, task)."""
    resolve_device(device)  # a device that is not here is the first thing to say
    task = task_of(path)
    predictor = load_predictor(path, task=task, device=device)
    if expect is not None and not isinstance(predictor, expect):
        raise AttnseqError(f"{path}: holds a {task.name} model, not {what or expect.__name__}")
    attach_lm(predictor)
    return predictor, task


def attach_lm(predictor) -> None:
    """Load the language model that the predictor's decode.lm names (a `task: lm` model directory)
    and fuse it into its beam search (`Seq2SeqPredictor.attach_lm`); nothing where decode.lm is ""."""
    dec = getattr(predictor.config, "decode", None)
    path = getattr(dec, "lm", "")
    if not path or not hasattr(predictor, "attach_lm"):
        return
    task = task_of(path)
    if task.name != "lm":
        raise AttnseqError(f"decode.lm = {path}: holds a {task.name} model, not a language model (task: lm)")
    lm, _, assets = checkpoint.load_model_dir(path, task=task, device=str(predictor.device))
    predictor.attach_lm(path, lm, assets.vocab.itos)


def set_decode(predictor, task, overrides: list[str], *, where: str) -> None:
    """`--set decode.KEY=VALUE` overrides (the command line's, the server's) applied to a loaded
    model's config and checked with it; any other key is refused with one line, as is a decode key
    its task does not use. A new decode.lm is loaded."""
    from attnseq.config import apply, nest, parse_override, validate

    dotted = dict(parse_override(o) for o in overrides)
    for key in dotted:
        section, _, name = key.partition(".")
        if section != "decode":
            raise AttnseqError(f"{where}: --set {key}: a trained model takes decode.* keys only (its "
                               f"{section} keys were fixed by training; retrain to change them)")  # fmt: skip
        if "beam_size" not in task.decode_options and name not in task.decode_options:
            takes = ", ".join("decode." + o for o in task.decode_options) or "none"
            raise AttnseqError(f"{where}: --set {key}: not for {task.no_search or f'a {task.name} model'} "
                               f"(it takes {takes})")  # fmt: skip
    if dotted:
        apply(predictor.config, nest(dotted, "--set"), "--set", {}, known_tasks())
        dec = predictor.config.decode
        if "decode.n_best" not in dotted:  # a narrower beam returns fewer alternatives than the model's default
            dec.n_best = min(dec.n_best, dec.beam_size)
        validate(predictor.config, "--set", {key: "--set" for key in dotted})
        if "decode.lm" in dotted:
            attach_lm(predictor)
