"""`attnseq serve`: an HTTP API over any trained model, with micro-batching and an attention page.

The web framework is imported on first use of the app's names, so `attnseq.serve.settings` stays
cheap for the command line's flags."""

from attnseq.serve.settings import Batching, Limits

__all__ = ["Batching", "Limits", "ServedModel", "create_app", "load_models", "run"]


def __getattr__(name: str):
    if name in ("ServedModel", "create_app", "load_models", "run"):
        from attnseq.serve import app

        return getattr(app, name)
    raise AttributeError(name)
