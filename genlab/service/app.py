"""The HTTP service: a FastAPI app over the store and the generation engine.

Every ``/v1`` endpoint and ``/metrics`` needs an API key (``Authorization: Bearer KEY`` or
``X-API-Key: KEY``); ``/healthz``, the web page and the OpenAPI docs do not. Roles nest: a
``viewer`` reads and searches, an ``editor`` also generates and gives feedback, an ``admin`` also
manages keys and models and sees every user's generations. Errors are JSON ``{"detail": "one
line"}`` with a 4xx status; a failed generation stores nothing.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, Query, Request
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from genlab.errors import AccessError, GenlabError, NotFoundError, StoreError
from genlab.service import metrics as prom
from genlab.service.engine import Engine, Job, Limits, new_seed, validate
from genlab.store import Generation, GenerationFilter, Store, as_json
from genlab.store.records import ApiKey

logger = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
ROLE_RANK = {"viewer": 0, "editor": 1, "admin": 2}
MAX_ID = 2**63 - 1  # the database's largest integer
GenerationId = Annotated[int, PathParam(ge=1, le=MAX_ID)]


# --- request and response bodies -----------------------------------------------------------------
class GenerateRequest(BaseModel):
    model: str = Field(min_length=1, max_length=200, description="A registered model: name, or name:version.")
    n: int = Field(1, ge=1, description="How many outputs (capped by the server's max_n).")
    prompt: str | None = Field(None, max_length=100_000, description="Text to continue (text and music models).")
    labels: list[int] | None = Field(None, max_length=64, description="Class label(s) for a conditional model.")
    seed: int | None = Field(None, ge=0, le=2**63 - 1, description="Random seed; drawn and recorded when absent.")
    parameters: dict[str, int | float | str | bool | list[str] | None] = Field(
        default_factory=dict, description="Sampling options: num_steps, guidance_scale… or max_new_tokens, "
        "temperature, top_k, top_p, repetition_penalty, num_beams, stop.")  # fmt: skip
    session_id: str | None = Field(None, min_length=1, max_length=128, description="Links the prompts of a chat.")
    sensitive: bool = Field(False, description="Store the prompt encrypted and keep it out of search.")
    redact: bool = Field(False, description="Remove e-mail addresses and phone numbers from the prompt first.")
    stream: bool = Field(False, description="Text only, n=1: answer with server-sent events as tokens arrive.")
    rag: str | None = Field(None, min_length=1, max_length=128, description="A document collection to retrieve from.")
    rag_k: int = Field(3, ge=1, le=10, description="How many passages to retrieve.")


class ErrorOut(BaseModel):
    detail: str = Field(description="What was wrong and how to fix it, in one line.")


ERRORS = {status: {"model": ErrorOut, "description": text} for status, text in [
    (401, "No key, or an unknown or revoked one"), (403, "The key's role may not do this"),
    (404, "No such model, generation or collection (or not yours)"), (413, "The request body is too large"),
    (422, "An invalid request: the field and the limit are named"), (429, "The key's rate limit; see Retry-After"),
    (503, "The database or a model's files are unavailable")]}  # fmt: skip


class GenerationOut(BaseModel):
    id: int
    user_id: str
    model: str
    kind: str
    prompt: str | None
    session_id: str | None
    sensitive: bool
    parameters: dict[str, Any]
    seed: int
    index: int
    text: str | None
    file_url: str | None
    file_sha256: str | None
    mime: str | None
    scores: dict[str, Any]
    context: list[Any]
    latency_ms: float
    created_at: datetime
    rating: float | None
    num_feedback: int


class GenerateResponse(BaseModel):
    model: str
    seed: int
    latency_ms: float
    generations: list[GenerationOut]


class SearchHitOut(BaseModel):
    score: float
    ranks: dict[str, int]
    generation: GenerationOut


class FeedbackRequest(BaseModel):
    generation_id: int = Field(ge=1, le=MAX_ID)
    rating: int = Field(ge=1, le=5)
    comment: str | None = Field(None, max_length=2000)


class KeyRequest(BaseModel):
    role: Literal["admin", "editor", "viewer"]
    user_id: str = Field(min_length=1, max_length=128, pattern=r"^[\w.@+-]+$")


class RegisterRequest(BaseModel):
    path: str = Field(min_length=1, max_length=4096, description="A run directory on the server.")
    name: str = Field(min_length=1, max_length=128, pattern=r"^[\w.-]+$")
    version: str | None = Field(None, min_length=1, max_length=64, pattern=r"^[\w.-]+$")


def _out(g: Generation) -> GenerationOut:
    data = as_json(g)
    data["file_url"] = f"/v1/generations/{g.id}/file" if g.file_path else None
    return GenerationOut(**{k: v for k, v in data.items() if k in GenerationOut.model_fields})


# --- the app ----------------------------------------------------------------------------------------
class _Usage:
    """Usage rows are written in batches by one thread, off the request path."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.queue: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self.thread = threading.Thread(target=self._run, name="genlab-usage", daemon=True)
        self.thread.start()

    def add(self, **row: Any) -> None:
        self.queue.put(row)

    def _run(self) -> None:
        while True:
            rows = [self.queue.get()]
            while not self.queue.empty() and len(rows) < 500:
                rows.append(self.queue.get())
            stop = None in rows
            rows = [r for r in rows if r is not None]
            try:
                self.store.record_usage_rows(rows)
            except Exception:  # monitoring must never take the service down
                logger.exception("could not record %d usage rows", len(rows))
            if stop:
                return

    def close(self) -> None:
        self.queue.put(None)
        self.thread.join(timeout=10)


class _RateLimiter:
    """A token bucket per API key: ``burst`` requests at once, refilled at ``per_minute``."""

    def __init__(self, per_minute: float, burst: int) -> None:
        self.rate = per_minute / 60.0
        self.burst = burst
        self.buckets: dict[int, tuple[float, float]] = {}
        self.lock = threading.Lock()

    def take(self, key_id: int) -> float:
        """0 when the request may go on, else the seconds to wait."""
        now = time.monotonic()
        with self.lock:
            tokens, last = self.buckets.get(key_id, (float(self.burst), now))
            tokens = min(self.burst, tokens + (now - last) * self.rate)
            if tokens < 1:
                self.buckets[key_id] = (tokens, now)
                return (1 - tokens) / self.rate
            self.buckets[key_id] = (tokens - 1, now)
            return 0.0


class _BodyLimit:
    """ASGI middleware: 413 for a request body over ``limit`` bytes, declared or streamed."""

    def __init__(self, app, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers", [])).get(b"content-length")
        too_big = JSONResponse({"detail": f"request body over {self.limit} bytes; send less."}, status_code=413)
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            return await too_big(scope, receive, send)
        seen = 0

        async def counted():
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                raise _TooBig
            return message

        try:
            await self.app(scope, counted, send)
        except _TooBig:
            await too_big(scope, receive, send)


class _TooBig(Exception):
    pass


def _authorised(role: str) -> Callable[..., ApiKey]:
    """A dependency: the request's API key, checked for ``role`` and the key's rate limit."""

    def check(request: Request) -> ApiKey:
        header = request.headers.get("authorization", "")
        token = header[7:].strip() if header.lower().startswith("bearer ") else request.headers.get("x-api-key")
        if not token:
            raise AccessError("this endpoint needs an API key: send 'Authorization: Bearer KEY'.")
        key = request.app.state.store.authenticate(token)
        request.state.key = key
        if ROLE_RANK[key.role] < ROLE_RANK[role]:
            raise _Forbidden(f"a {key.role} key may not do this; it needs the {role} role.")
        wait = request.app.state.limiter.take(key.id)
        if wait > 0:
            raise _RateLimited(wait)
        return key

    return check


Viewer = Annotated[ApiKey, Depends(_authorised("viewer"))]
Editor = Annotated[ApiKey, Depends(_authorised("editor"))]
Admin = Annotated[ApiKey, Depends(_authorised("admin"))]


def create_app(store: Store, *, limits: Limits = Limits(), device: str = "cpu") -> FastAPI:
    """The service over ``store``; the caller owns the store (the app flushes, never closes it)."""
    engine = Engine(limits, device=device)
    metrics = prom.ServiceMetrics(engine)
    usage_log = _Usage(store)
    limiter = _RateLimiter(limits.rate_per_minute, limits.burst)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        usage_log.close()
        store.flush()

    app = FastAPI(title="genlab", version="1", description=__doc__, lifespan=lifespan, responses=ERRORS,
                  openapi_tags=[{"name": "generation"}, {"name": "store"}, {"name": "admin"}])  # fmt: skip
    app.state.store, app.state.engine, app.state.limits, app.state.limiter = store, engine, limits, limiter
    app.add_middleware(_BodyLimit, limit=limits.max_body_bytes)

    @app.middleware("http")
    async def observe(request: Request, call_next):
        start = time.perf_counter()
        response = await call_next(request)
        seconds = time.perf_counter() - start
        route = getattr(request.scope.get("route"), "path", "unmatched")
        metrics.observe(request.method, route, response.status_code, seconds)
        key: ApiKey | None = getattr(request.state, "key", None)
        if key is not None:
            usage_log.add(user_id=key.user_id, endpoint=f"{request.method} {route}", status=response.status_code,
                      model_id=getattr(request.state, "model_id", None), items=getattr(request.state, "items", 0),
                      latency_ms=seconds * 1000)  # fmt: skip
        return response

    _install_error_handlers(app)

    def visible(key: ApiKey, user: str | None = None) -> str | None:
        """The user filter a key may see: its own generations, or anyone's (or ``user``'s) for an admin."""
        return user if key.role == "admin" else key.user_id

    # --- public ---------------------------------------------------------------------------------
    @app.get("/healthz", tags=["admin"])
    def healthz() -> dict[str, Any]:
        """Liveness and readiness: the database answers. No key needed."""
        store.ping()
        return {"status": "ok", "models_loaded": len(engine.cache)}

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    if STATIC.is_dir():
        app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/metrics", tags=["admin"], response_class=Response)
    def prometheus(key: Viewer) -> Response:
        """Prometheus metrics (text exposition format)."""
        body, content_type = metrics.render()
        return Response(body, media_type=content_type)

    # --- generation -------------------------------------------------------------------------------
    @app.post("/v1/generate", tags=["generation"], response_model=GenerateResponse,
              responses={200: {"content": {"text/event-stream": {}}}})  # fmt: skip
    def generate(body: GenerateRequest, request: Request, key: Editor):
        """Generate ``n`` outputs with a registered model and store them. With ``stream: true``
        (text, n=1) the answer is server-sent events: ``token`` events with text pieces, then one
        ``done`` event holding the stored generation (or an ``error`` event)."""
        model = store.get_model(body.model)
        request.state.model_id = model.id
        try:
            loaded = engine.cache.get(model)
        except (GenlabError, OSError) as exc:
            raise StoreError(f"model {model.name}:{model.version} cannot be loaded from {model.path}: {exc}") from None
        labels = tuple(body.labels) if body.labels is not None else None
        options = validate(model, loaded, dict(body.parameters), body.n, body.prompt, labels, limits)
        prompt, context = body.prompt, []
        if body.rag is not None:
            prompt, context = _rag_prompt(store, model, loaded, body, options)
        job = Job(model, body.n, body.seed if body.seed is not None else new_seed(), prompt, labels, options)
        record = dict(model=model, user_id=key.user_id, parameters=_recorded(options, labels, body), seed=job.seed,
                      prompt=body.prompt, session_id=body.session_id, sensitive=body.sensitive,
                      redact_contacts=body.redact, context=context)  # fmt: skip
        if body.stream:
            if model.modality != "text" or body.n != 1:
                raise _Invalid("stream=true needs a text model and n=1.")
            return StreamingResponse(_sse(engine, store, job, record, metrics), media_type="text/event-stream")
        start = time.perf_counter()
        outputs = engine.run(job)
        latency = (time.perf_counter() - start) * 1000
        stored = store.record_generations(outputs, latency_ms=latency, **record)
        request.state.items = len(stored)
        metrics.generated(model, len(stored))
        return GenerateResponse(model=f"{model.name}:{model.version}", seed=job.seed, latency_ms=latency,
                                generations=[_out(g) for g in stored])  # fmt: skip

    # --- the store --------------------------------------------------------------------------------
    @app.get("/v1/generations/{generation_id}", tags=["store"], response_model=GenerationOut)
    def get_generation(generation_id: GenerationId, key: Viewer) -> GenerationOut:
        return _out(store.get_generation(generation_id, user_id=visible(key)))

    @app.get("/v1/generations/{generation_id}/file", tags=["store"], response_class=FileResponse)
    def get_file(generation_id: GenerationId, key: Viewer) -> FileResponse:
        """The image, audio or MIDI file of a generation."""
        g = store.get_generation(generation_id, user_id=visible(key))
        return FileResponse(store.media_path(g), media_type=g.mime or "application/octet-stream")

    @app.get("/v1/generations", tags=["store"], response_model=list[GenerationOut])
    def list_generations(
        key: Viewer,
        model: Annotated[str | None, Query(max_length=200)] = None,
        user: Annotated[str | None, Query(max_length=128, description="Admins only.")] = None,
        kind: Literal["text", "image", "music", "audio"] | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        min_score: float | None = None,
        session_id: Annotated[str | None, Query(max_length=128)] = None,
        limit: Annotated[int, Query(ge=1, le=200)] = 50,
        offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
    ) -> list[GenerationOut]:
        """Stored generations, newest first: your own (an admin's: everyone's, or ``user``'s)."""
        filters = GenerationFilter(model=model, user_id=visible(key, user), kind=kind, since=_utc(since),
                                   until=_utc(until), min_score=min_score, session_id=session_id)  # fmt: skip
        return [_out(g) for g in store.list_generations(filters, limit=limit, offset=offset)]

    @app.get("/v1/search", tags=["store"], response_model=list[SearchHitOut])
    def search(
        key: Viewer,
        q: Annotated[str | None, Query(max_length=1000)] = None,
        mode: Literal["keyword", "vector", "hybrid"] = "hybrid",
        k: Annotated[int, Query(ge=1, le=100)] = 10,
        like: Annotated[int | None, Query(ge=1, le=MAX_ID, description="Find generations similar to this one.")] = None,
        model: Annotated[str | None, Query(max_length=200)] = None,
        user: Annotated[str | None, Query(max_length=128)] = None,
        kind: Literal["text", "image", "music", "audio"] | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        min_score: float | None = None,
    ) -> list[SearchHitOut]:
        """Keyword (BM25), vector (MiniLM cosine) or hybrid (reciprocal rank fusion) search."""
        if like is not None:
            store.get_generation(like, user_id=visible(key))  # 404 unless the key may see it
        filters = GenerationFilter(model=model, user_id=visible(key, user), kind=kind, since=_utc(since),
                                   until=_utc(until), min_score=min_score)  # fmt: skip
        hits = store.search(q, mode=mode, k=k, filters=filters, like=like)
        return [SearchHitOut(score=h.score, ranks=h.ranks, generation=_out(h.generation)) for h in hits]

    @app.post("/v1/feedback", tags=["store"], status_code=201)
    def feedback(body: FeedbackRequest, key: Editor) -> dict[str, Any]:
        """Rate (1–5) and comment on a generation you can see."""
        fb = store.add_feedback(body.generation_id, user_id=key.user_id, rating=body.rating, comment=body.comment,
                                visible_to=visible(key))  # fmt: skip
        return as_json(fb)

    @app.get("/v1/models", tags=["store"])
    def models(key: Viewer) -> list[dict[str, Any]]:
        """Registered models, every version."""
        return [{k: v for k, v in as_json(m).items() if k != "path"} for m in store.list_models()]

    # --- admin --------------------------------------------------------------------------------------
    @app.post("/v1/models", tags=["admin"], status_code=201)
    def register(body: RegisterRequest, key: Admin) -> dict[str, Any]:
        """Register a run directory that is on the server's disk."""
        try:
            return as_json(store.register_model(body.path, body.name, version=body.version))
        except (ValueError, OSError) as exc:  # a NUL byte, an over-long name: no such run, whatever it is
            raise _Invalid(f"cannot read a run at {body.path[:200]!r}: {exc}") from None

    @app.post("/v1/keys", tags=["admin"], status_code=201)
    def create_key(body: KeyRequest, key: Admin) -> dict[str, Any]:
        """A new API key; the key itself is in this answer only."""
        record, secret = store.create_key(role=body.role, user_id=body.user_id)
        return {**as_json(record), "key": secret}

    @app.get("/v1/keys", tags=["admin"])
    def list_keys(key: Admin) -> list[dict[str, Any]]:
        return [as_json(k) for k in store.list_keys()]

    @app.delete("/v1/keys/{prefix}", tags=["admin"])
    def revoke_key(prefix: Annotated[str, PathParam(max_length=16)], key: Admin) -> dict[str, Any]:
        return as_json(store.revoke_key(prefix))

    @app.get("/v1/usage", tags=["admin"])
    def usage_report(key: Admin, bucket: Literal["minute", "hour", "day"] = "hour",
              since: datetime | None = None) -> list[dict[str, Any]]:  # fmt: skip
        """Requests, outputs, errors and mean latency per time bucket, user and model."""
        return store.usage(since=_utc(since), bucket=bucket)

    return app


# --- helpers ---------------------------------------------------------------------------------------
def _utc(at: datetime | None) -> datetime | None:
    """A filter time in UTC (naive times are taken as UTC); 422 for one the calendar cannot hold in UTC."""
    if at is None or at.tzinfo is None:
        return at
    try:
        return at.astimezone(timezone.utc)
    except OverflowError:
        raise _Invalid(f"time {at.isoformat()} is out of range once converted to UTC.") from None


def _recorded(options: dict[str, Any], labels: tuple[int, ...] | None, body: GenerateRequest) -> dict[str, Any]:
    """The parameters stored with a generation: enough, with the seed, to reproduce it."""
    recorded = dict(options)
    recorded["n"] = body.n
    if labels is not None:
        recorded["labels"] = list(labels)
    if body.rag is not None:
        recorded.update(rag=body.rag, rag_k=body.rag_k)
    return recorded


def _rag_prompt(store: Store, model, loaded, body: GenerateRequest, options: dict[str, Any]) -> tuple[str, list[int]]:
    """The prompt with the collection's best passages before it, fitted to the model's context."""
    from genlab.store import rag

    if model.modality != "text":
        raise _Invalid(f"rag needs a text model; {model.name} is a {model.modality} model.")
    if not (body.prompt and body.prompt.strip()):
        raise _Invalid("rag retrieves passages for a prompt; give one.")
    passages = rag.retrieve(store, body.rag, body.prompt, k=body.rag_k)
    return rag.fit_to_context(loaded, passages, body.prompt, options["max_new_tokens"])


async def _sse(engine: Engine, store: Store, job: Job, record: dict[str, Any], metrics) -> AsyncIterator[str]:
    """Server-sent events for one streamed text generation; stored only once it completes. If the
    client leaves, the task is cancelled here and the worker is told to stop."""
    from genlab.store import Output

    pieces, cancel = engine.start_stream(job)
    collected: list[str] = []
    start = time.perf_counter()
    try:
        while True:
            kind, value = await run_in_threadpool(pieces.get)
            if kind == "error":
                raise value
            if kind == "end":
                break
            collected.append(value)
            yield f"event: token\ndata: {json.dumps({'text': value})}\n\n"
        latency = (time.perf_counter() - start) * 1000
        stored = await run_in_threadpool(store.record_generations, [Output("text", text="".join(collected))],
                                         latency_ms=latency, **record)  # fmt: skip
        metrics.generated(job.model, 1)
        yield f"event: done\ndata: {_out(stored[0]).model_dump_json()}\n\n"
    except GenlabError as exc:
        yield f"event: error\ndata: {json.dumps({'detail': str(exc)})}\n\n"
    except Exception:
        logger.exception("streamed generation failed")
        yield f"event: error\ndata: {json.dumps({'detail': 'generation failed; nothing was stored.'})}\n\n"
    finally:
        cancel.set()


class _Forbidden(GenlabError):
    pass


class _Invalid(GenlabError):
    pass


class _RateLimited(GenlabError):
    def __init__(self, wait: float) -> None:
        super().__init__(f"rate limit reached for this key; retry in {wait:.1f} s.")
        self.wait = wait


def _install_error_handlers(app: FastAPI) -> None:
    def status_of(exc: GenlabError) -> int:
        if isinstance(exc, _RateLimited):
            return 429
        if isinstance(exc, _Forbidden):
            return 403
        if isinstance(exc, AccessError):
            return 401
        if isinstance(exc, NotFoundError):
            return 404
        if isinstance(exc, StoreError):  # the database, or a registered model's files, failing
            return 503
        return 422  # ConfigError, DataError and the rest: the request asked for something invalid

    @app.exception_handler(GenlabError)
    async def genlab_error(request: Request, exc: GenlabError) -> JSONResponse:
        status = status_of(exc)
        headers = {"Retry-After": str(max(1, round(exc.wait)))} if isinstance(exc, _RateLimited) else None
        if status == 401:
            headers = {"WWW-Authenticate": "Bearer"}
        if status == 503:
            logger.warning("%s %s: %s", request.method, request.url.path, exc)
        return JSONResponse({"detail": str(exc)}, status_code=status, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err.get("loc", ()) if p != "body")
            problems.append(f"{where}: {err.get('msg')}" if where else str(err.get("msg")))
        return JSONResponse({"detail": "; ".join(problems)}, status_code=422)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        logger.exception("%s %s failed", request.method, request.url.path)
        return JSONResponse({"detail": "internal error; nothing was stored. The server log has the details."},
                            status_code=500)  # fmt: skip
