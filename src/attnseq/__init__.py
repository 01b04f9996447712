"""attnseq: sequence-to-sequence models with attention (see SPEC.md for the equations)."""

from attnseq.errors import AttnseqError

__version__ = "0.1.0"

__all__ = ["AttnseqError", "Translator", "__version__"]


def __getattr__(name: str):
    # Import lazily so `import attnseq` stays cheap for the CLI's --help.
    if name == "Translator":
        from attnseq.translate import Translator

        return Translator
    raise AttributeError(name)
