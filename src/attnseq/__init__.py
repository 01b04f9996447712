"""attnseq: sequence-to-sequence models with attention (docs/models.md has the equations)."""

from attnseq.errors import AttnseqError

__version__ = "0.1.0"

__all__ = ["AttnseqError", "Translator", "__version__", "load", "tune_process"]


def load(path, *, device: str = "cpu"):
    """The predictor of a model directory (or a training run's best model), for its task: a
    `Translator`, a `Classifier`, ... Each has `predict(inputs) -> list[Prediction]`."""
    from attnseq.predict import load as _load

    return _load(path, device=device)


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
