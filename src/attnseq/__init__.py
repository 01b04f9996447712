"""attnseq: sequence-to-sequence models with attention (docs/models.md has the equations)."""

from attnseq.errors import AttnseqError

__version__ = "0.1.0"

__all__ = ["AttnseqError", "Translator", "__version__", "load", "train", "tune_process"]


def load(path, *, device: str = "cpu"):
    """The predictor of a model directory (or a training run's best model), for its task: a
    `Translator`, a `Classifier`, ... Each has `predict(inputs) -> list[Prediction]`."""
    from attnseq.predict import load as _load

    return _load(path, device=device)


def train(config=None, *, out, overrides=(), resume: bool = False, progress: bool = False):
    """Train a model as `attnseq train CONFIG --out OUT --set KEY=VALUE ...` does, without its printing;
    returns the run directory (best/, last/, metrics.jsonl; `load(run)` gives its predictor).

    Args:
        config: a YAML config's path (e.g. "configs/dates.yaml"), a `Config`, or None for the defaults.
        out: the run directory.
        overrides: "KEY=VALUE" strings, as --set takes them (applied over a path's config).
        resume: continue the run in `out` where it stopped.
        progress: show the progress line on stderr.
    Raises:
        AttnseqError: a config, data or run directory problem, in one line as the command prints it.
    """
    from pathlib import Path

    from attnseq.config import load_config, validate
    from attnseq.schema import Config
    from attnseq.trainer import Trainer

    if isinstance(config, Config):
        if overrides:
            raise AttnseqError("train: overrides apply to a config file; change the Config object instead")
        cfg = validate(config, "config")
    else:
        cfg = load_config(config, list(overrides))
    Trainer(cfg, out, resume=resume, progress_bar=progress).fit()
    return Path(out)


def tune_process() -> dict[str, bool]:
    """Apply the process-wide settings the `attnseq` command runs with (see attnseq.runtime);
    a library call never changes them on its own."""
    from attnseq.runtime import tune_process as _tune

    return _tune()


def __getattr__(name: str):
    # Import lazily so `import attnseq` stays cheap for the CLI's --help.
    if name == "Translator":
        from attnseq.tasks.translation import Translator

        return Translator
    raise AttributeError(name)
