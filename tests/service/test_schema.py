"""Property-based tests of the HTTP API from its own OpenAPI schema (schemathesis): whatever a client
sends to any operation, with an admin key or with a viewer key, the service answers without a server
error and, where the schema documents the answer, in the documented shape.

The server errors the exploration found (since fixed) are kept below as plain regression tests, each
with the request that triggered it."""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi.checks import response_schema_conformance

MODELS = ("gpt", "cvae", "ddpm")
MAX_EXAMPLES = 25  # per operation, role and mode (valid / invalid): the file runs in well under a minute
INT64_MAX = 2**63 - 1  # SQLite's largest INTEGER


@dataclass
class Api:
    url: str
    keys: dict[str, str]  # role → key


@pytest.fixture(scope="module")
def api(tmp_path_factory, gpt_run, cvae_run, ddpm_run):
    """A server over a store of its own, with the `service` fixture's models and limits: the admin run
    registers models, creates and revokes keys and stores generations, none of which the tests sharing
    `service` (and its keys) may see."""
    from genlab.service.app import create_app
    from genlab.service.engine import Limits
    from genlab.service.server import background_server
    from genlab.store import Store

    store = Store.open(tmp_path_factory.mktemp("schema") / "genlab.db")
    for run, name in zip((gpt_run, cvae_run, ddpm_run), MODELS, strict=True):
        store.register_model(run, name)
    keys = {role: store.create_key(role=role, user_id=f"schema-{role}")[1] for role in ("admin", "viewer")}
    limits = Limits(max_n=8, max_steps=50, max_new_tokens=64, rate_per_minute=60_000, burst=1000, max_body_bytes=16384)
    with background_server(create_app(store, limits=limits)) as url:
        yield Api(url, keys)
    store.close()


@pytest.fixture(scope="module")
def api_schema(api):
    # read event streams to their end, as a client that wants the stored generation does
    config = schemathesis.Config.from_dict({"max-stream-events": 100_000})
    return schemathesis.openapi.from_url(f"{api.url}/openapi.json", config=config)


# --- the server errors found so far, now regression tests -----------------------------------------------
EDGE_REQUESTS = [  # (method, path, httpx options): each once answered 5xx
    ("POST", "/v1/models", {"json": {"path": "no/such/run", "name": "m"}}),  # a client's bad path: was 503
    ("POST", "/v1/models", {"json": {"path": "a\x00b", "name": "m"}}),  # NUL byte: ValueError in Path.resolve
    ("POST", "/v1/models", {"json": {"path": "a" * 300, "name": "m"}}),  # ENAMETOOLONG
    ("GET", f"/v1/generations/{2**63}", {}),  # ids outside SQLite's 64-bit integers overflowed
    ("GET", f"/v1/generations/{-(2**64)}/file", {}),
    ("GET", "/v1/search", {"params": {"like": 2**63}}),
    ("POST", "/v1/feedback", {"json": {"generation_id": 2**63, "rating": 3}}),
    ("GET", "/v1/generations", {"params": {"since": "9999-12-31T23:59:59-23:59"}}),  # overflows in UTC
    ("GET", "/v1/search", {"params": {"q": "a", "until": "0001-01-01T00:00:00+23:59"}}),
    ("GET", "/v1/usage", {"params": {"since": "9999-12-31T23:59:59-23:59"}}),
]  # fmt: skip


@pytest.mark.parametrize(("method", "path", "options"), EDGE_REQUESTS,
                         ids=[f"{m} {p[:40]} {json.dumps(o)[:40]}" for m, p, o in EDGE_REQUESTS])  # fmt: skip
def test_edge_requests_get_a_4xx(api, method, path, options):
    response = httpx.request(method, api.url + path, headers={"Authorization": f"Bearer {api.keys['admin']}"},
                             timeout=60, **options)  # fmt: skip
    assert 400 <= response.status_code < 500, response.text
    assert "\n" not in response.json()["detail"]


def test_validation_errors_match_the_schema(api, api_schema):
    """422 answers are documented as {"detail": "one line"}, and are that."""
    case = api_schema["/v1/generate"]["POST"].Case(body={"model": "gpt", "n": 0}, media_type="application/json")
    case.call_and_validate(headers={"Authorization": f"Bearer {api.keys['admin']}"},
                           checks=[response_schema_conformance])  # fmt: skip


# --- the exploration ------------------------------------------------------------------------------------
def call(case, api: Api, role: str) -> None:
    """Send ``case`` with ``role``'s key and check the answer. A generated model name is mapped onto a
    registered one, so generation runs the real models instead of answering 404."""
    body = case.body
    if case.path == "/v1/generate" and isinstance(body, dict) and isinstance(body.get("model"), str):
        body["model"] = MODELS[zlib.crc32(body["model"].encode()) % len(MODELS)]
    case.call_and_validate(headers={"Authorization": f"Bearer {api.keys[role]}"},
                           checks=[not_a_server_error, response_schema_conformance], timeout=60)  # fmt: skip


def describe(exc: BaseException) -> str:
    """The failure with the causes an exception group (Hypothesis' FlakyFailure) would hide."""
    if isinstance(exc, FailureGroup):
        return str(exc)  # schemathesis' own report, with a curl command
    causes = [describe(e) for e in getattr(exc, "exceptions", ())]
    return "\n".join([f"{type(exc).__name__}: {exc}", *causes])


def explore(operation, api: Api, role: str) -> None:
    """MAX_EXAMPLES requests that fit ``operation``'s schema and as many that do not."""
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

        @given(case=operation.as_strategy(mode))
        @settings(max_examples=MAX_EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        def run(case) -> None:
            call(case, api, role)

        try:
            run()
        except Unsatisfiable:  # nothing to get wrong: an operation without parameters or body
            if mode == GenerationMode.POSITIVE:
                raise


# schemathesis.pytest.from_fixture (a subtest per operation) fails under pytest 9 ("'Function' object has
# no attribute '_nodeid'"), so the test walks the operations itself and reports every failing one.
@pytest.mark.parametrize("role", ["admin", "viewer"])
def test_generated_requests_get_no_server_error_and_documented_answers(api, api_schema, role):
    failures = []
    for result in api_schema.get_all_operations():
        operation = result.ok()
        try:
            explore(operation, api, role)
        except (Exception, FailureGroup) as exc:  # a FailureGroup is a BaseExceptionGroup
            failures.append(f"{role} key, {operation.label}:\n{describe(exc)}")
    assert not failures, "\n\n".join(failures)
