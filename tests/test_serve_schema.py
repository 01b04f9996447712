"""The API against its own OpenAPI schema, by schemathesis: generated requests, valid (positive)
and invalid (negative), must never get a 5xx, and every response must match the schema (status
codes, content types, bodies). Bounded in examples per operation and mode, and in time."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from attnseq.serve import Batching, Limits, create_app
from tests.serving import live_server

OPERATIONS = ["POST /v1/predict", "GET /v1/models", "GET /health"]


@pytest.fixture(scope="module")
def api(served):
    # small limits so that generated inputs stay cheap to decode and the limits themselves are hit
    app = create_app(served, limits=Limits(max_chars=40, max_inputs=4), batching=Batching())
    with live_server(app) as url:
        yield url, schemathesis.openapi.from_url(f"{url}/openapi.json")


def test_the_schema_lists_every_operation(api):
    _, schema = api
    found = sorted(result.ok().label for result in schema.get_all_operations())
    assert found == sorted(OPERATIONS)


POSITIVE, NEGATIVE = schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE


# the GET operations take no parameters: nothing in them can be made invalid
@pytest.mark.parametrize(("label", "mode"), [(OPERATIONS[0], NEGATIVE), *((label, POSITIVE) for label in OPERATIONS)])
def test_no_server_error_and_every_response_matches_the_schema(api, label, mode):
    url, schema = api
    operation = schema.find_operation_by_label(label)
    calls = []

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True, database=None)
    def check(case):
        response = case.call_and_validate(base_url=url, timeout=30)
        calls.append(response.status_code)
        assert response.status_code < 500

    check()
    assert calls  # examples ran
