"""The HTTP API over real HTTP (a uvicorn server on loopback): generation, the store, roles,
visibility, limits, streaming, metrics and batching."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest
from PIL import Image


def _png(client: httpx.Client, generation: dict) -> np.ndarray:
    import io

    r = client.get(generation["file_url"])
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    return np.asarray(Image.open(io.BytesIO(r.content)))


def _text(service, role="editor", **body) -> dict:
    body = {"model": "gpt", "prompt": "ROMEO:", "parameters": {"max_new_tokens": 12}, **body}
    with service.client(role) as c:
        r = c.post("/v1/generate", json=body)
    assert r.status_code == 200, r.text
    return r.json()


# --- access -------------------------------------------------------------------------------------------
def test_health_needs_no_key_but_everything_else_does(service):
    with service.client() as c:
        assert c.get("/healthz").json()["status"] == "ok"
        assert c.get("/").status_code == 200  # the web page asks for a key itself
        assert c.get("/openapi.json").status_code == 200
        for method, path in [("GET", "/v1/models"), ("GET", "/v1/generations"), ("GET", "/v1/search?q=x"),
                             ("POST", "/v1/generate"), ("POST", "/v1/feedback"), ("GET", "/metrics"),
                             ("GET", "/v1/generations/1"), ("GET", "/v1/keys")]:  # fmt: skip
            r = c.request(method, path, json={} if method == "POST" else None)
            assert r.status_code == 401, (method, path)
            assert "API key" in r.json()["detail"] and r.headers["www-authenticate"] == "Bearer"
        r = c.get("/v1/models", headers={"Authorization": "Bearer gl_not-a-key"})
        assert r.status_code == 401 and "unknown or revoked" in r.json()["detail"]


@pytest.mark.parametrize(
    ("role", "method", "path", "body"),
    [
        ("viewer", "POST", "/v1/generate", {"model": "gpt"}),
        ("viewer", "POST", "/v1/feedback", {"generation_id": 1, "rating": 3}),
        ("editor", "POST", "/v1/keys", {"role": "admin", "user_id": "mallory"}),
        ("editor", "GET", "/v1/keys", None),
        ("editor", "GET", "/v1/usage", None),
        ("editor", "POST", "/v1/models", {"path": "/tmp", "name": "x"}),
    ],
)
def test_roles_are_enforced(service, role, method, path, body):
    with service.client(role) as c:
        r = c.request(method, path, json=body)
    assert r.status_code == 403
    assert f"a {role} key may not do this" in r.json()["detail"]


def test_admin_manages_keys(service):
    with service.client("admin") as c:
        r = c.post("/v1/keys", json={"role": "viewer", "user_id": "temp"})
        assert r.status_code == 201
        key, prefix = r.json()["key"], r.json()["prefix"]
        assert all("key" not in k for k in c.get("/v1/keys").json())  # listed without the secret
        with httpx.Client(base_url=service.url, headers={"X-API-Key": key}) as temp:
            assert temp.get("/v1/models").status_code == 200
            assert c.delete(f"/v1/keys/{prefix}").status_code == 200
            assert temp.get("/v1/models").status_code == 401  # revoked at once


# --- generation ------------------------------------------------------------------------------------------
def test_text_generation_is_stored_and_reproducible(service):
    first = _text(service, n=2, seed=11, session_id="chat")
    assert first["model"] == "gpt:1" and first["seed"] == 11
    gens = first["generations"]
    assert [g["index"] for g in gens] == [0, 1] and all(g["kind"] == "text" and g["text"] for g in gens)
    assert gens[0]["parameters"] == {"max_new_tokens": 12, "n": 2}
    again = _text(service, n=2, seed=11)  # same model, parameters and seed: the same outputs
    assert [g["text"] for g in again["generations"]] == [g["text"] for g in gens]
    with service.client("editor") as c:
        stored = c.get(f"/v1/generations/{gens[1]['id']}").json()
    assert stored["text"] == gens[1]["text"] and stored["prompt"] == "ROMEO:" and stored["session_id"] == "chat"
    unseeded = _text(service)
    assert isinstance(unseeded["seed"], int)  # drawn by the server and recorded


def test_image_generation_and_files(service):
    with service.client("editor") as c:
        r = c.post("/v1/generate", json={"model": "cvae", "n": 3, "labels": [3], "seed": 5})
        assert r.status_code == 200, r.text
        gens = r.json()["generations"]
        assert len(gens) == 3 and all(g["kind"] == "image" and g["mime"] == "image/png" for g in gens)
        image = _png(c, gens[0])
        assert image.shape == (8, 8) and image.dtype == np.uint8
        similar = c.get("/v1/search", params={"like": gens[0]["id"], "k": 2}).json()  # in domain-network space
        assert len(similar) == 2 and all(h["generation"]["kind"] == "image" for h in similar)
        r = c.post("/v1/generate", json={"model": "ddpm", "n": 2, "seed": 1, "parameters": {"num_steps": 5}})
        assert r.status_code == 200, r.text
        assert r.json()["generations"][0]["parameters"] == {"num_steps": 5, "n": 2}


def test_concurrent_image_requests_are_batched_without_changing_results(service):
    """Requests that arrive together share one sample call, and each gets what it gets alone."""
    bodies = [{"model": "cvae", "n": 1 + i % 3, "seed": 100 + i} for i in range(8)]
    with service.client("editor") as c:
        alone = [[_png(c, g) for g in c.post("/v1/generate", json=b).json()["generations"]] for b in bodies]
        before = _metric(c, "genlab_image_batches")

        def run(body):
            with service.client("editor") as c2:
                return [_png(c2, g) for g in c2.post("/v1/generate", json=body).json()["generations"]]

        with ThreadPoolExecutor(8) as pool:
            together = list(pool.map(run, bodies))
        calls = _metric(c, "genlab_image_batches") - before
    assert calls < len(bodies)  # some requests shared a call
    for a, b in zip(alone, together, strict=True):
        assert len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            assert np.abs(x.astype(int) - y.astype(int)).max() <= 1  # equal up to float rounding at the uint8 edge


def test_concurrent_text_requests_are_batched_without_changing_results(service):
    """Different prompts, lengths, n and seeds in one decoding loop: each gets what it gets alone."""
    prompts = ["A", "ROMEO:", "To be, or not", "KING", "O", "Good morrow, sir", "HAM", "We"]
    bodies = [{"model": "gpt", "prompt": p, "n": 1 + i % 2, "seed": 50 + i, "parameters": {"max_new_tokens": 12}}
              for i, p in enumerate(prompts)]  # fmt: skip
    with service.client("editor") as c:
        alone = [[g["text"] for g in c.post("/v1/generate", json=b).json()["generations"]] for b in bodies]
        before = _metric(c, "genlab_text_batches")

        def run(body):
            with service.client("editor") as c2:
                return [g["text"] for g in c2.post("/v1/generate", json=body).json()["generations"]]

        with ThreadPoolExecutor(8) as pool:
            together = list(pool.map(run, bodies))
        calls = _metric(c, "genlab_text_batches") - before
    assert calls < len(bodies)
    assert together == alone


def _metric(client: httpx.Client, name: str) -> float:
    for line in client.get("/metrics").text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in /metrics")


def test_streaming_sends_tokens_then_the_stored_generation(service):
    body = {"model": "gpt", "prompt": "JULIET:", "stream": True, "seed": 3, "parameters": {"max_new_tokens": 10}}
    with service.client("editor") as c, c.stream("POST", "/v1/generate", json=body) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        events = []
        for block in r.read().decode().split("\n\n"):
            if block.strip():
                kind, data = block.split("\n", 1)
                events.append((kind.removeprefix("event: "), json.loads(data.removeprefix("data: "))))
    tokens = [d["text"] for k, d in events if k == "token"]
    kind, done = events[-1]
    assert kind == "done" and done["text"] == "".join(tokens) and len(tokens) >= 1
    non_streamed = _text(service, prompt="JULIET:", seed=3, parameters={"max_new_tokens": 10})
    assert non_streamed["generations"][0]["text"] == done["text"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"model": "gpt", "n": 9}, "n=9 must be between 1 and 8"),
        ({"model": "gpt", "n": 0}, "n: Input should be greater than or equal to 1"),
        ({"model": "ddpm", "parameters": {"num_steps": 51}}, "num_steps=51 must be an integer from 1 to 50"),
        ({"model": "gpt", "parameters": {"max_new_tokens": 65}}, "max_new_tokens=65 must be an integer from 1 to 64"),
        ({"model": "gpt", "parameters": {"guidance": 2}}, "unknown parameter(s) ['guidance']"),
        ({"model": "cvae", "labels": [10]}, "label 10 is out of range"),
        ({"model": "cvae", "prompt": "hi"}, "takes no prompt"),
        ({"model": "gpt", "labels": [1]}, "takes no labels"),
        ({"model": "cvae", "stream": True}, "stream=true needs a text model"),
        ({"model": "gpt:9"}, "no registered model 'gpt:9'"),
        ({"model": "gpt", "stream": True, "parameters": {"temperature": "x"}}, "temperature"),
        ({"model": "gpt", "stream": True, "parameters": {"top_p": 2.0}}, "top_p=2.0 must be in (0, 1]"),
        ({"model": "gpt:", "parameters": {"max_new_tokens": 2}}, None),  # "name:" is the latest version
        ({"n": 1}, "model: Field required"),
        ({"model": "gpt", "rating": 5}, None),  # unknown fields are ignored, not an error
    ],
)
def test_bad_requests_get_one_line_4xx(service, body, message):
    with service.client("editor") as c:
        r = c.post("/v1/generate", json=body)
    if message is None:
        assert r.status_code == 200
        return
    assert r.status_code in (404, 422), r.text
    assert message in r.json()["detail"] and "\n" not in r.json()["detail"]


def test_body_size_limit(service):
    with service.client("editor") as c:
        r = c.post("/v1/generate", content=json.dumps({"model": "gpt", "prompt": "x" * 20000}),
                   headers={"content-type": "application/json"})  # fmt: skip
        assert r.status_code == 413 and "16384 bytes" in r.json()["detail"]


def test_rate_limit(tmp_path, gpt_run):
    from genlab.service.app import create_app
    from genlab.service.engine import Limits
    from genlab.service.server import background_server
    from genlab.store import Store

    store = Store.open(tmp_path / "g.db", embed=False)
    _, key = store.create_key(role="viewer", user_id="v")
    app = create_app(store, limits=Limits(rate_per_minute=60, burst=3))
    with background_server(app) as url, httpx.Client(base_url=url, headers={"X-API-Key": key}) as c:
        codes = [c.get("/v1/models").status_code for _ in range(5)]
        assert codes[:3] == [200, 200, 200] and codes[3] == 429
        r = c.get("/v1/models")
        assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1 and "retry in" in r.json()["detail"]
    store.close()


def test_a_failing_generation_stores_nothing(service, monkeypatch):
    from sqlalchemy import func, select

    from genlab.store.schema import GenerationRow

    with service.store.session() as s:
        before = s.scalar(select(func.count(GenerationRow.id)))
    import genlab.sequences

    def broken(*args, **kwargs):
        raise RuntimeError("out of memory")

    monkeypatch.setattr(genlab.sequences, "generate_text", broken)
    with service.client("editor") as c:
        r = c.post("/v1/generate", json={"model": "gpt", "prompt": "x"})
    assert r.status_code == 500 and "nothing was stored" in r.json()["detail"]
    with service.store.session() as s:
        assert s.scalar(select(func.count(GenerationRow.id))) == before


# --- the store over HTTP -------------------------------------------------------------------------------------
def test_users_see_their_own_generations_unless_admin(service):
    mine = _text(service, prompt="MINE:")["generations"][0]
    theirs = _text(service, role="editor2", prompt="THEIRS:")["generations"][0]
    with service.client("editor") as c:
        ids = {g["id"] for g in c.get("/v1/generations", params={"limit": 200}).json()}
        assert mine["id"] in ids and theirs["id"] not in ids
        assert c.get(f"/v1/generations/{theirs['id']}").status_code == 404
        assert c.post("/v1/feedback", json={"generation_id": theirs["id"], "rating": 1}).status_code == 404
        hits = c.get("/v1/search", params={"q": "THEIRS", "mode": "keyword"}).json()
        assert theirs["id"] not in {h["generation"]["id"] for h in hits}
        # a user filter from a non-admin is ignored: still only their own
        listed = c.get("/v1/generations", params={"user": "someone-else"}).json()
        assert listed and all(g["user_id"] == "editor-user" for g in listed)
    with service.client("admin") as c:
        assert c.get(f"/v1/generations/{theirs['id']}").status_code == 200
        listed = c.get("/v1/generations", params={"user": "someone-else"}).json()
        assert listed and {g["user_id"] for g in listed} == {"someone-else"}


def test_search_and_feedback(service):
    gen = _text(service, prompt="The honeybee queen:", seed=4)["generations"][0]
    with service.client("editor") as c:
        for mode in ("keyword", "vector", "hybrid"):
            r = c.get("/v1/search", params={"q": "honeybee queen", "mode": mode, "k": 5})
            assert r.status_code == 200, r.text
            if mode != "vector":  # the prompt's words are indexed for keyword search
                assert gen["id"] in [h["generation"]["id"] for h in r.json()]
        r = c.get("/v1/search", params={"like": gen["id"], "k": 3})
        assert r.status_code == 200 and gen["id"] not in [h["generation"]["id"] for h in r.json()]
        assert c.get("/v1/search", params={"q": "x", "mode": "fuzzy"}).status_code == 422
        assert c.get("/v1/search").status_code == 422
        r = c.post("/v1/feedback", json={"generation_id": gen["id"], "rating": 5, "comment": "lovely"})
        assert r.status_code == 201 and r.json()["rating"] == 5
        assert c.post("/v1/feedback", json={"generation_id": gen["id"], "rating": 6}).status_code == 422
        got = c.get(f"/v1/generations/{gen['id']}").json()
        assert (got["rating"], got["num_feedback"]) == (5.0, 1)


def test_models_metrics_and_usage(service):
    _text(service)
    with service.client("viewer") as c:
        models = {f"{m['name']}:{m['version']}": m for m in c.get("/v1/models").json()}
        assert set(models) >= {"gpt:1", "cvae:1", "ddpm:1"} and "path" not in models["gpt:1"]
        assert models["cvae:1"]["modality"] == "image"
        text = c.get("/metrics").text
    assert 'genlab_requests_total{method="POST",route="/v1/generate",status="200"}' in text
    assert "genlab_request_seconds_bucket" in text and "genlab_models_loaded" in text
    with service.client("admin") as c:
        rows = c.get("/v1/usage", params={"bucket": "day"}).json()
    assert any(r["user_id"] == "editor-user" and r["items"] >= 1 for r in rows)


def test_generation_with_retrieval(service):
    from genlab.store import rag

    rag.add_documents(service.store, "facts", [("bees", "the bees make honey in the hive"),
                                               ("kings", "the king rode to war at dawn")])  # fmt: skip
    body = {"model": "gpt", "prompt": "what do bees make", "rag": "facts", "rag_k": 1, "seed": 2,
            "parameters": {"max_new_tokens": 4}}  # fmt: skip
    with service.client("editor") as c:
        r = c.post("/v1/generate", json=body)
        assert r.status_code == 200, r.text
        (gen,) = r.json()["generations"]
        (doc,) = rag.retrieve(service.store, "facts", "what do bees make", k=1)
        assert gen["context"] == [doc.id] and "honey" in doc.text
        assert gen["parameters"]["rag"] == "facts" and gen["prompt"] == "what do bees make"
        r = c.post("/v1/generate", json={**body, "rag": "nope"})
        assert r.status_code == 404 and "facts" in r.json()["detail"]
        r = c.post("/v1/generate", json={"model": "cvae", "rag": "facts"})
        assert r.status_code == 422 and "rag needs a text model" in r.json()["detail"]


def test_a_client_leaving_a_stream_does_not_block_the_model(tmp_path, gpt_run):
    """The worker stops at the next token once the client is gone (it used to keep the model's lock)."""
    from genlab.service.app import create_app
    from genlab.service.server import background_server
    from genlab.store import Store

    store = Store.open(tmp_path / "genlab.db")
    store.register_model(gpt_run, "gpt")
    headers = {"Authorization": f"Bearer {store.create_key(role='editor', user_id='reader')[1]}"}
    short = {"model": "gpt", "prompt": "a", "parameters": {"max_new_tokens": 2}}
    long = {"model": "gpt", "prompt": "a", "parameters": {"max_new_tokens": 500}, "stream": True}
    server = background_server(create_app(store), timeout=5)  # a thread stuck on the lock must not delay teardown
    try:
        with server as url, httpx.Client(base_url=url, headers=headers) as http:
            assert http.post("/v1/generate", json=short, timeout=60).is_success  # loads the model and embedder
            with http.stream("POST", "/v1/generate", json=long, timeout=60) as stream:
                next(stream.iter_lines())  # the first event, then the client goes away
            assert http.post("/v1/generate", json=short, timeout=5).status_code == 200
    finally:
        store.close()
