"""The HTTP API's response shapes, as the OpenAPI schema documents them (`serve.app` builds the
request schema from the loaded models)."""

from pydantic import BaseModel, Field


class ErrorDetail(BaseModel):
    code: str = Field(description="what went wrong: a limit's name (max_chars, max_inputs, max_body_bytes, "
                      "timeout_s, max_queue) or invalid_request, bad_input, not_found, internal")  # fmt: skip
    message: str
    limit: float | None = Field(None, description="the limit's value, for a limit")


class ErrorBody(BaseModel):
    error: ErrorDetail


class Alternative(BaseModel):
    output: str
    score: float | None
    rank_score: float | None = None
    output_tokens: list[str]


class PredictionOut(BaseModel):
    """One `attnseq.contracts.Prediction` (the shape of `--json` too)."""

    input: str
    output: str
    score: float | None = Field(description="sum of log-probabilities (seq2seq) or the class probability")
    rank_score: float | None = None
    input_tokens: list[str]
    output_tokens: list[str]
    attention: list[list[float]] | None = Field(
        description="rows: output tokens (one row for a classifier), columns: input tokens; rows sum to 1"
    )
    alternatives: list[Alternative] = Field(
        description="the n-best list, best first (this prediction included), or every class by probability"
    )
    copied: list[float] | None = Field(
        None, description="a model that copies: per output token, the share of its probability copied from the input"
    )


class PredictResponse(BaseModel):
    model: str
    task: str
    search: dict[str, float | int | bool] = Field(description="the search options applied, defaults filled in")
    predictions: list[PredictionOut]
    seconds: float = Field(description="time in the server, queueing and decoding included")


ERRORS = {
    400: {"model": ErrorBody, "description": "the model could not read an input"},
    408: {"model": ErrorBody, "description": "not answered within the per-request timeout (timeout_s)"},
    413: {"model": ErrorBody, "description": "request body over max_body_bytes"},
    422: {"model": ErrorBody, "description": "the request does not match the schema or breaks a limit"},
    429: {"model": ErrorBody, "description": "too many inputs already waiting for this model (max_queue)"},
}
