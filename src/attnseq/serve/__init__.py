"""`attnseq serve`: an HTTP API over any trained model, with micro-batching and an attention page."""

from attnseq.serve.app import Batching, Limits, ServedModel, create_app, load_models, run

__all__ = ["Batching", "Limits", "ServedModel", "create_app", "load_models", "run"]
