"""The generation store: registered models, datasets, prompts and generations, feedback, usage and
API keys in one database, with media files and vector indexes in a folder beside it.

Every write is one transaction. A generation's media file is written (content-addressed, atomically)
before its row, so a failure leaves at most an unreferenced file, never a row without its file; its
embedding is kept in the database too, so the FAISS indexes are caches that are rebuilt whenever
they disagree with it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import func, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from genlab.errors import AccessError, ConfigError, DataError, GenlabError, NotFoundError, StoreError
from genlab.io import atomic_path, file_sha256
from genlab.store import db
from genlab.store.indexes import Indexes
from genlab.store.privacy import PromptCipher, redact
from genlab.store.records import (
    ApiKey,
    DatasetInfo,
    Feedback,
    Generation,
    GenerationFilter,
    ModelInfo,
    Output,
)
from genlab.store.schema import (
    DATASET_KINDS,
    OUTPUT_KINDS,
    ROLES,
    ApiKeyRow,
    DatasetRow,
    EmbeddingRow,
    FeedbackRow,
    GenerationRow,
    ModelRow,
    PromptRow,
    UsageRow,
    utcnow,
)

logger = logging.getLogger(__name__)

KEY_PREFIX = "gl_"
MEDIA_SUFFIX = {"image/png": ".png", "audio/wav": ".wav", "audio/midi": ".mid", "application/json": ".json"}


class Store:
    """Open with :meth:`open`; safe to share between threads (each call takes its own session)."""

    def __init__(self, url: str, home: Path, *, embed: bool = True) -> None:
        self.url = url
        self.home = home
        self.engine = db.make_engine(url)
        self.dialect = self.engine.dialect.name
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._embed = embed
        self.indexes = Indexes(self.session, home / "index")
        self._image_embedders: dict[int, Any] = {}  # model id → ImageEmbedder or None
        self._embedders_lock = threading.Lock()

    @classmethod
    def open(cls, url: str | None = None, *, home: str | Path | None = None, embed: bool = True,
             migrate: bool = True) -> Store:  # fmt: skip
        """The store at ``url`` (else ``$GENLAB_DB``, else ``./genlab.db``), its schema upgraded to
        the latest migration. ``embed=False`` skips the embeddings behind vector search."""
        url = db.resolve_url(url)
        store = cls(url, db.home_for(url, home), embed=embed)
        if migrate:
            db.upgrade(store.engine)
        return store

    def close(self) -> None:
        self.flush()
        self.engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session in a transaction: committed at the end, rolled back on any error."""
        with self._sessions.begin() as session:
            yield session

    @property
    def media_dir(self) -> Path:
        return self.home / "media"

    # --- models -------------------------------------------------------------------------------
    def register_model(self, run_dir: str | Path, name: str, *, version: str | None = None,
                       metrics: dict[str, Any] | None = None) -> ModelInfo:  # fmt: skip
        """Add a trained run to the registry as ``name`` (version: ``version``, else the next integer).
        Registering the same weights under the same name again returns the existing entry."""
        from genlab.checkpoint import read_run_config, weights_path

        _check_name(name, "model name")
        run_dir = Path(run_dir).resolve()
        record = read_run_config(run_dir)
        weights = weights_path(run_dir)
        if not weights.exists():
            raise NotFoundError(f"{run_dir} has no trained weights ({weights.name}); train it first.")
        sha = file_sha256(weights)
        metrics = metrics if metrics is not None else _run_metrics(run_dir)
        with self.session() as s:
            same = s.scalars(select(ModelRow).where(ModelRow.name == name, ModelRow.weights_sha256 == sha)).first()
            if same is not None and version in (None, same.version):
                return _model_info(same)
            if version is None:
                versions = s.scalars(select(ModelRow.version).where(ModelRow.name == name)).all()
                version = str(1 + max((int(v) for v in versions if v.isdigit()), default=0))
            _check_name(version, "version")
            row = ModelRow(name=name, version=version, family=record["family"], recipe=record.get("recipe"),
                           modality=_modality(record), path=str(run_dir), weights_sha256=sha,
                           metrics=metrics, config=record)  # fmt: skip
            s.add(row)
            try:
                s.flush()
            except IntegrityError:
                raise ConfigError(f"model {name}:{version} is already registered with other weights; "
                                  "give a new --version.") from None  # fmt: skip
            return _model_info(row)

    def get_model(self, name: str, version: str | None = None) -> ModelInfo:
        """A registered model: ``name`` or ``name:version``; the latest version when none is given."""
        if version is None and ":" in name:
            name, version = name.rsplit(":", 1)
            version = version or None  # "name:" is the latest version too
        with self.session() as s:
            query = select(ModelRow).where(ModelRow.name == name)
            if version is not None:
                query = query.where(ModelRow.version == version)
            row = s.scalars(query.order_by(ModelRow.created_at.desc(), ModelRow.id.desc())).first()
            if row is None:
                names = sorted(set(s.scalars(select(ModelRow.name)).all()))
                what = f"{name}:{version}" if version else name
                raise NotFoundError(f"no registered model {what!r}; registered: {names or 'none'}. "
                                    "Add one with `genlab register RUN_DIR --name NAME`.")  # fmt: skip
            return _model_info(row)

    def list_models(self) -> list[ModelInfo]:
        with self.session() as s:
            return [_model_info(r) for r in s.scalars(select(ModelRow).order_by(ModelRow.name, ModelRow.id))]

    # --- datasets -----------------------------------------------------------------------------
    def register_dataset(self, path: str | Path, name: str, *, kind: str = "real", model: str | None = None,
                         seed: int | None = None, num_items: int | None = None,
                         provenance: dict[str, Any] | None = None) -> DatasetInfo:  # fmt: skip
        """Record a dataset by the content hash of its files. Synthetic data must name the
        registered ``model`` (``name[:version]``) and ``seed`` that made it; real data must not."""
        if kind not in DATASET_KINDS:
            raise ConfigError(f"dataset kind {kind!r} is not one of {DATASET_KINDS}.")
        if kind == "synthetic" and (model is None or seed is None):
            raise ConfigError("a synthetic dataset records the model and seed that made it: give model= and seed=.")
        if kind == "real" and (model is not None or seed is not None):
            raise ConfigError("real data has no generating model or seed; use kind='synthetic' for generated data.")
        _check_name(name, "dataset name")
        path = Path(path).resolve()
        version = content_hash(path)
        model_id = self.get_model(model).id if model is not None else None
        with self.session() as s:
            row = s.scalars(select(DatasetRow).where(DatasetRow.name == name, DatasetRow.version == version)).first()
            if row is None:
                row = DatasetRow(name=name, version=version, kind=kind, path=str(path), num_items=num_items,
                                 model_id=model_id, seed=seed, provenance=provenance or {})  # fmt: skip
                s.add(row)
                s.flush()
            elif row.kind != kind:
                raise ConfigError(f"{path} is already registered as {row.kind} data ({name}); "
                                  "real and synthetic data are never mixed.")  # fmt: skip
            return DatasetInfo(row.id, row.name, row.version, row.kind, row.path, row.num_items, row.model_id,
                               row.seed, row.provenance, row.created_at)  # fmt: skip

    def list_datasets(self, kind: str | None = None) -> list[DatasetInfo]:
        with self.session() as s:
            query = select(DatasetRow).order_by(DatasetRow.id)
            if kind is not None:
                query = query.where(DatasetRow.kind == kind)
            return [DatasetInfo(r.id, r.name, r.version, r.kind, r.path, r.num_items, r.model_id, r.seed,
                                r.provenance, r.created_at) for r in s.scalars(query)]  # fmt: skip

    # --- generations --------------------------------------------------------------------------
    def record_generations(
        self,
        outputs: Sequence[Output],
        *,
        model: ModelInfo,
        user_id: str,
        parameters: dict[str, Any],
        seed: int,
        prompt: str | None = None,
        session_id: str | None = None,
        sensitive: bool = False,
        redact_contacts: bool = False,
        latency_ms: float = 0.0,
        context: Sequence[int] = (),
    ) -> list[Generation]:
        """Store one request's outputs (output ``i`` gets ``index=i``) with its prompt, in one
        transaction. A sensitive prompt is stored only encrypted and is neither indexed nor embedded;
        ``redact_contacts`` removes e-mail addresses and phone numbers from the prompt first."""
        if not outputs:
            raise DataError("nothing to record: the generation produced no outputs.")
        for out in outputs:
            if out.kind not in OUTPUT_KINDS:
                raise ConfigError(f"output kind {out.kind!r} is not one of {OUTPUT_KINDS}.")
        redactions = 0
        if prompt is not None and redact_contacts:
            prompt, redactions = redact(prompt)
        ciphertext = PromptCipher().encrypt(prompt) if sensitive and prompt is not None else None
        files = [self._write_media(out) if out.data is not None else (None, None) for out in outputs]
        vectors = self._embed_outputs(outputs, model) if self._embed else {}
        params_json = json.loads(json.dumps(parameters, default=str))  # fail here, not in the transaction
        with self.session() as s:
            prompt_row = None
            if prompt is not None:
                parent = None
                if session_id is not None:
                    parent = s.scalar(select(PromptRow.id).where(PromptRow.session_id == session_id,
                                                                 PromptRow.user_id == user_id)
                                      .order_by(PromptRow.id.desc()).limit(1))  # fmt: skip
                prompt_row = PromptRow(user_id=user_id, session_id=session_id, parent_id=parent,
                                       text=None if sensitive else prompt, ciphertext=ciphertext,
                                       sensitive=sensitive, redactions=redactions)  # fmt: skip
                s.add(prompt_row)
                s.flush()
            rows = []
            for i, (out, (path, sha)) in enumerate(zip(outputs, files, strict=True)):
                row = GenerationRow(prompt_id=prompt_row.id if prompt_row else None, user_id=user_id,
                                    model_id=model.id, kind=out.kind, parameters=params_json, seed=seed, index=i,
                                    text=out.text, file_path=path, file_sha256=sha, mime=out.mime,
                                    scores=dict(out.scores), score=_headline_score(out.scores),
                                    context=list(context), latency_ms=latency_ms)  # fmt: skip
                s.add(row)
                rows.append(row)
            s.flush()
            indexed_prompt = None if sensitive else prompt
            for row in rows:
                self._index_text(s, row.id, indexed_prompt, row.text)
            added: dict[str, list[tuple[int, np.ndarray]]] = {}
            for space, per_output in vectors.items():
                for i, vector in per_output:
                    s.add(EmbeddingRow(space=space, owner_id=rows[i].id, vector=vector.astype(np.float32).tobytes()))
                    added.setdefault(space, []).append((rows[i].id, vector))
            s.flush()
            result = self._generations(s, rows)
        for space, items in added.items():  # after the commit: the index never holds uncommitted rows
            self.indexes.add(space, np.array([i for i, _ in items]), np.stack([v for _, v in items]))
        return result

    def get_generation(self, generation_id: int, *, user_id: str | None = None, decrypt: bool = False) -> Generation:
        """Generation ``generation_id``; with ``user_id``, only if it is that user's."""
        with self.session() as s:
            row = s.get(GenerationRow, generation_id)
            if row is None or (user_id is not None and row.user_id != user_id):
                raise NotFoundError(f"no generation {generation_id}" + (" of yours" if user_id else "") + ".")
            return self._generations(s, [row], decrypt=decrypt)[0]

    def list_generations(self, filters: GenerationFilter = GenerationFilter(), *, limit: int = 50,
                         offset: int = 0) -> list[Generation]:  # fmt: skip
        """Generations matching ``filters``, newest first."""
        with self.session() as s:
            query = self._filtered(s, select(GenerationRow), filters)
            query = query.order_by(GenerationRow.created_at.desc(), GenerationRow.id.desc()).limit(limit).offset(offset)
            return self._generations(s, list(s.scalars(query)))

    def media_path(self, generation: Generation) -> Path:
        """The file of an image/audio/MIDI generation, checked against its recorded hash."""
        if generation.file_path is None:
            raise NotFoundError(f"generation {generation.id} is {generation.kind} text and has no file.")
        path = self.media_dir / generation.file_path
        if not path.exists() or file_sha256(path) != generation.file_sha256:
            raise StoreError(f"the file of generation {generation.id} ({path}) is missing or altered.")
        return path

    # --- feedback and usage -------------------------------------------------------------------
    def add_feedback(self, generation_id: int, *, user_id: str, rating: int, comment: str | None = None,
                     visible_to: str | None = None) -> Feedback:  # fmt: skip
        """A 1–5 rating (and comment) by ``user_id``; with ``visible_to``, only on that user's generations."""
        if not (isinstance(rating, int) and 1 <= rating <= 5):
            raise ConfigError(f"rating={rating!r} must be an integer from 1 to 5.")
        self.get_generation(generation_id, user_id=visible_to)
        with self.session() as s:
            row = FeedbackRow(generation_id=generation_id, user_id=user_id, rating=rating, comment=comment)
            s.add(row)
            s.flush()
            return Feedback(row.id, row.generation_id, row.user_id, row.rating, row.comment, row.created_at)

    def record_usage(self, *, user_id: str, endpoint: str, status: int, model_id: int | None = None,
                     items: int = 0, latency_ms: float = 0.0) -> None:  # fmt: skip
        self.record_usage_rows([dict(user_id=user_id, endpoint=endpoint, status=status, model_id=model_id,
                                     items=items, latency_ms=latency_ms)])  # fmt: skip

    def record_usage_rows(self, rows: Sequence[dict[str, Any]]) -> None:
        """Several usage rows (keys as :meth:`record_usage`'s arguments) in one transaction."""
        if rows:
            with self.session() as s:
                s.add_all([UsageRow(**row) for row in rows])

    def ping(self) -> None:
        """Raise :class:`StoreError` unless the database answers."""
        try:
            with self.engine.connect() as connection:
                connection.execute(text("SELECT 1"))
        except Exception as exc:
            raise StoreError(f"the store database does not answer: {exc}") from None

    def usage(self, *, since: datetime | None = None, bucket: str = "hour") -> list[dict[str, Any]]:
        """Requests, outputs, errors and mean latency per (time bucket, user, model)."""
        if bucket not in ("minute", "hour", "day"):
            raise ConfigError(f"bucket {bucket!r} is not one of minute, hour, day.")
        with self.session() as s:
            query = select(UsageRow.created_at, UsageRow.user_id, UsageRow.model_id, UsageRow.status,
                           UsageRow.items, UsageRow.latency_ms)  # fmt: skip
            if since is not None:
                query = query.where(UsageRow.created_at >= since)
            table: dict[tuple, dict[str, Any]] = {}
            cut = {"minute": 16, "hour": 13, "day": 10}[bucket]
            for at, user, model_id, status, items, latency in s.execute(query):
                key = (at.isoformat()[:cut], user, model_id)
                row = table.setdefault(key, {"time": key[0], "user_id": user, "model_id": model_id, "requests": 0,
                                             "items": 0, "errors": 0, "latency_ms": 0.0})  # fmt: skip
                row["requests"] += 1
                row["items"] += items
                row["errors"] += status >= 400
                row["latency_ms"] += latency
            for row in table.values():
                row["latency_ms"] /= row["requests"]
            return sorted(table.values(), key=lambda r: (r["time"], r["user_id"], r["model_id"] or 0))

    # --- API keys -----------------------------------------------------------------------------
    def create_key(self, *, role: str, user_id: str) -> tuple[ApiKey, str]:
        """A new API key: its record and the key itself, which is shown once and stored only hashed."""
        if role not in ROLES:
            raise ConfigError(f"role {role!r} is not one of {ROLES}.")
        if not user_id or len(user_id) > 128:
            raise ConfigError(f"user id {user_id!r} must be 1–128 characters.")
        key = KEY_PREFIX + secrets.token_urlsafe(32)
        with self.session() as s:
            row = ApiKeyRow(key_sha256=_key_hash(key), prefix=key[:10], user_id=user_id, role=role)
            s.add(row)
            s.flush()
            return _api_key(row), key

    def authenticate(self, key: str) -> ApiKey:
        """The live key record for ``key``; :class:`AccessError` for an unknown or revoked key."""
        with self.session() as s:
            row = s.scalars(select(ApiKeyRow).where(ApiKeyRow.key_sha256 == _key_hash(key))).first()
            if row is None or row.revoked_at is not None:
                raise AccessError("unknown or revoked API key; ask an admin for one (`genlab keys create`).")
            return _api_key(row)

    def list_keys(self) -> list[ApiKey]:
        with self.session() as s:
            return [_api_key(r) for r in s.scalars(select(ApiKeyRow).order_by(ApiKeyRow.id))]

    def revoke_key(self, prefix_or_id: str | int) -> ApiKey:
        with self.session() as s:
            col = ApiKeyRow.id if isinstance(prefix_or_id, int) else ApiKeyRow.prefix
            row = s.scalars(select(ApiKeyRow).where(col == prefix_or_id)).first()
            if row is None:
                raise NotFoundError(f"no API key {prefix_or_id!r}; `genlab keys list` shows them.")
            row.revoked_at = row.revoked_at or utcnow()
            return _api_key(row)

    # --- search (genlab.store.search) and vector indexes ----------------------------------------
    def search(self, query: str | None = None, **options: Any):
        """Keyword, vector or hybrid search over generations: see :func:`genlab.store.search.search`."""
        from genlab.store.search import search

        return search(self, query, **options)

    def _index(self, space: str):
        """The vector index of an embedding space, in step with the database (:class:`Indexes`)."""
        return self.indexes.get(space)

    def drop_index(self, space: str) -> None:
        """Forget the vector index of a deleted embedding space (its rows are gone)."""
        self.indexes.drop(space)

    def flush(self) -> None:
        """Write the in-memory vector indexes to disk (they are rebuilt from the database if lost)."""
        self.indexes.flush()

    # --- internals ----------------------------------------------------------------------------
    def _write_media(self, out: Output) -> tuple[str, str]:
        sha = hashlib.sha256(out.data).hexdigest()
        rel = f"{sha[:2]}/{sha}{MEDIA_SUFFIX.get(out.mime or '', '.bin')}"
        path = self.media_dir / rel
        if not path.exists():  # content-addressed: the same bytes are kept once
            path.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(path) as tmp:
                tmp.write_bytes(out.data)
        return rel, sha

    def _embed_outputs(self, outputs: Sequence[Output], model: ModelInfo) -> dict[str, list[tuple[int, np.ndarray]]]:
        from genlab.store import embeddings

        spaces: dict[str, list[tuple[int, np.ndarray]]] = {}
        texts = [(i, o.text) for i, o in enumerate(outputs) if o.kind in ("text", "music") and o.text]
        if texts:
            embedder = embeddings.text_embedder()
            vecs = embedder.embed([t for _, t in texts])
            spaces[f"generations/{embedder.name}"] = [(i, v) for (i, _), v in zip(texts, vecs, strict=True)]
        images = [(i, o.embedding_source) for i, o in enumerate(outputs) if o.kind == "image"
                  and o.embedding_source is not None]  # fmt: skip
        embedder = self._image_embedder(model) if images else None
        if embedder is not None:  # without one, images are found by keyword, filters and listing
            vecs = embedder.embed(np.stack([a for _, a in images]))
            spaces[f"generations/{embedder.name}"] = [(i, v) for (i, _), v in zip(images, vecs, strict=True)]
        return spaces

    def _image_embedder(self, model: ModelInfo):
        """The domain network of the model's training data when one ships, else the model's own
        encoder (an unconditional VAE or autoencoder, e.g. on the user's data), else None."""
        from genlab.store import embeddings

        with self._embedders_lock:
            if model.id in self._image_embedders:
                return self._image_embedders[model.id]
        embedder = None
        if model.dataset in embeddings.shipped_domain_datasets():
            embedder = embeddings.image_embedder(model.dataset)
        else:
            from genlab import api

            try:
                name = f"encoder-{model.name}-{model.version}"
                embedder = embeddings.ImageEmbedder.from_model(api.load(model.path), name)
            except GenlabError as exc:  # a GAN, a conditional model, a diffusion model: no usable encoder
                logger.info("no image embeddings for %s:%s: %s", model.name, model.version, exc)
        with self._embedders_lock:
            return self._image_embedders.setdefault(model.id, embedder)

    def _index_text(self, s: Session, row_id: int, prompt: str | None, output: str | None) -> None:
        if self.dialect == "sqlite":  # PostgreSQL indexes the columns themselves (GIN expression indexes)
            s.execute(text("INSERT INTO generations_fts(rowid, prompt, output) VALUES (:id, :p, :o)"),
                      {"id": row_id, "p": prompt or "", "o": output or ""})  # fmt: skip

    def _filtered(self, s: Session, query, filters: GenerationFilter):
        f = filters
        if f.model is not None:
            name, _, version = f.model.partition(":")
            ids = select(ModelRow.id).where(ModelRow.name == name)
            if version:
                ids = ids.where(ModelRow.version == version)
            query = query.where(GenerationRow.model_id.in_(ids))
        if f.user_id is not None:
            query = query.where(GenerationRow.user_id == f.user_id)
        if f.kind is not None:
            if f.kind not in OUTPUT_KINDS:
                raise ConfigError(f"kind {f.kind!r} is not one of {OUTPUT_KINDS}.")
            query = query.where(GenerationRow.kind == f.kind)
        if f.since is not None:
            query = query.where(GenerationRow.created_at >= _aware(f.since))
        if f.until is not None:
            query = query.where(GenerationRow.created_at <= _aware(f.until))
        if f.min_score is not None:
            query = query.where(GenerationRow.score >= f.min_score)
        if f.session_id is not None:
            query = query.where(GenerationRow.prompt_id.in_(select(PromptRow.id)
                                                            .where(PromptRow.session_id == f.session_id)))  # fmt: skip
        return query

    def _generations(self, s: Session, rows: Sequence[GenerationRow], *, decrypt: bool = False) -> list[Generation]:
        """Records for ``rows`` (in their order), with their models, prompts and ratings read in three
        queries for all of them, not three per row."""
        if not rows:
            return []
        models = {m.id: m for m in s.scalars(select(ModelRow).where(ModelRow.id.in_({r.model_id for r in rows})))}
        prompt_ids = {r.prompt_id for r in rows if r.prompt_id is not None}
        prompts = {p.id: p for p in s.scalars(select(PromptRow).where(PromptRow.id.in_(prompt_ids)))}
        ratings = {gid: (avg, count) for gid, avg, count in s.execute(
            select(FeedbackRow.generation_id, func.avg(FeedbackRow.rating), func.count(FeedbackRow.id))
            .where(FeedbackRow.generation_id.in_([r.id for r in rows])).group_by(FeedbackRow.generation_id)
        )}  # fmt: skip
        return [self._record(row, models[row.model_id], prompts.get(row.prompt_id), ratings.get(row.id, (None, 0)),
                             decrypt=decrypt) for row in rows]  # fmt: skip

    @staticmethod
    def _record(row: GenerationRow, model: ModelRow, prompt: PromptRow | None, rating: tuple[Any, int], *,
                decrypt: bool) -> Generation:  # fmt: skip
        prompt_text = prompt.text if prompt is not None else None
        if prompt is not None and prompt.sensitive and decrypt:
            prompt_text = PromptCipher().decrypt(prompt.ciphertext)
        mean, count = rating
        return Generation(
            id=row.id, user_id=row.user_id, model=f"{model.name}:{model.version}", model_id=row.model_id,
            kind=row.kind, prompt=prompt_text, prompt_id=row.prompt_id,
            session_id=prompt.session_id if prompt else None, sensitive=bool(prompt and prompt.sensitive),
            parameters=row.parameters, seed=row.seed, index=row.index, text=row.text, file_path=row.file_path,
            file_sha256=row.file_sha256, mime=row.mime, scores=row.scores, context=row.context,
            latency_ms=row.latency_ms, created_at=row.created_at,
            rating=float(mean) if mean is not None else None, num_feedback=int(count),
        )  # fmt: skip


# --- helpers --------------------------------------------------------------------------------------
def content_hash(path: Path) -> str:
    """sha256 over a file, or over a folder's files (relative names and contents, in sorted order)."""
    if path.is_file():
        return file_sha256(path)
    if not path.is_dir():
        raise NotFoundError(f"{path} does not exist; give a data file or folder.")
    digest = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file())
    if not files:
        raise DataError(f"{path} holds no files; an empty dataset cannot be registered.")
    for p in files:
        digest.update(p.relative_to(path).as_posix().encode() + b"\0" + file_sha256(p).encode())
    return digest.hexdigest()


def _run_metrics(run_dir: Path) -> dict[str, Any]:
    """The run's evaluation (metrics.json) headline values, else its last validation losses."""
    from genlab.checkpoint import last_metrics
    from genlab.io import read_json

    if (run_dir / "metrics.json").exists():
        values = read_json(run_dir / "metrics.json").get("metrics", {})
        return {k: v.get("value", v) if isinstance(v, dict) else v for k, v in values.items()}
    last = last_metrics(run_dir).get("val", {})
    return {k: v for k, v in last.items() if isinstance(v, (int, float))}


def _modality(record: dict[str, Any]) -> str:
    from genlab import registry

    modality = getattr(registry.family(record["family"]).model_class, "modality", "image")
    if modality == "tokens":
        return "music" if record.get("model", {}).get("tokenizer") == "music" else "text"
    return modality


def _headline_score(scores: dict[str, float]) -> float | None:
    return float(scores["score"]) if "score" in scores else None


def _check_name(value: str, what: str) -> None:
    if not value or len(value) > 128 or any(c in value for c in ":/\\\n\t "):
        raise ConfigError(f"{what} {value!r} must be 1–128 characters without spaces, ':' or slashes.")


def _aware(at: datetime) -> datetime:
    return at if at.tzinfo is not None else at.replace(tzinfo=timezone.utc)


def _key_hash(key: str) -> str:
    # API keys are 256-bit random tokens: one SHA-256 suffices (slow hashes are for low-entropy passwords)
    return hashlib.sha256(key.encode()).hexdigest()


def _model_info(row: ModelRow) -> ModelInfo:
    return ModelInfo(row.id, row.name, row.version, row.family, row.recipe, row.modality, row.path,
                     row.weights_sha256, row.metrics, row.created_at,
                     dataset=(row.config.get("data") or {}).get("name"))  # fmt: skip


def _api_key(row: ApiKeyRow) -> ApiKey:
    return ApiKey(row.id, row.prefix, row.user_id, row.role, row.created_at, row.revoked_at)
