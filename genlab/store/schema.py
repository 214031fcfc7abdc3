"""The store's tables (SQLAlchemy 2 declarative). The Alembic migrations in ``migrations/versions``
create exactly these; ``tests/store/test_db.py`` checks that the two never drift apart.

What is kept, and why it is shaped so:

- ``models``: registered runs (name + version unique), with the weights' content hash so a
  generation can be traced to the exact weights that made it.
- ``datasets``: real and synthetic data are told apart by ``kind``; a synthetic set must name the
  model and seed that made it (a CHECK constraint, not a convention).
- ``prompts`` → ``generations``: a prompt belongs to a user and a session; ``parent_id`` links the
  prompts of one conversation. A generation records the model, parameters and seed (enough to
  reproduce it), its output (text inline; files by path + sha256), scores and latency.
- ``feedback``, ``usage``: ratings by users; one usage row per request, for monitoring.
- ``api_keys``: only the SHA-256 of a key is stored.
- ``collections`` → ``documents``: passages for retrieval-augmented generation.
- ``embeddings``: the vectors behind the FAISS indexes, so an index can always be rebuilt.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

ROLES = ("admin", "editor", "viewer")
OUTPUT_KINDS = ("text", "image", "music", "audio")
DATASET_KINDS = ("real", "synthetic")


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class UTCDateTime(TypeDecorator):
    """Timestamps in UTC, always timezone-aware in Python (SQLite would hand back naive ones)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect) -> datetime | None:
        if value is not None and value.tzinfo is not None:
            value = value.astimezone(timezone.utc)
        return value

    def process_result_value(self, value: datetime | None, dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        return value


class Base(DeclarativeBase):
    type_annotation_map: ClassVar = {dict[str, Any]: JSON, list[Any]: JSON, datetime: UTCDateTime()}


class ModelRow(Base):
    __tablename__ = "models"
    __table_args__ = (UniqueConstraint("name", "version"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    version: Mapped[str] = mapped_column(String(64))
    family: Mapped[str] = mapped_column(String(64))
    recipe: Mapped[str | None] = mapped_column(String(128))
    modality: Mapped[str] = mapped_column(String(16))  # what the model outputs: one of OUTPUT_KINDS
    path: Mapped[str] = mapped_column(Text)  # the run directory
    weights_sha256: Mapped[str] = mapped_column(String(64))
    metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)
    config: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class DatasetRow(Base):
    __tablename__ = "datasets"
    __table_args__ = (
        UniqueConstraint("name", "version"),
        CheckConstraint("kind IN ('real', 'synthetic')", name="dataset_kind"),
        # synthetic data always names its maker; real data never does
        CheckConstraint(
            "(kind = 'real' AND model_id IS NULL AND seed IS NULL)"
            " OR (kind = 'synthetic' AND model_id IS NOT NULL AND seed IS NOT NULL)",
            name="dataset_provenance",
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    version: Mapped[str] = mapped_column(String(64))  # sha256 of the files' contents
    kind: Mapped[str] = mapped_column(String(16))
    path: Mapped[str] = mapped_column(Text)
    num_items: Mapped[int | None] = mapped_column(Integer)
    model_id: Mapped[int | None] = mapped_column(ForeignKey("models.id"))
    seed: Mapped[int | None] = mapped_column(Integer)
    provenance: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class PromptRow(Base):
    __tablename__ = "prompts"
    __table_args__ = (Index("ix_prompts_session", "session_id", "created_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[str] = mapped_column(String(128), index=True)
    session_id: Mapped[str | None] = mapped_column(String(128))
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("prompts.id"))  # the previous prompt of the session
    text: Mapped[str | None] = mapped_column(Text)  # None when sensitive (then only ciphertext is kept)
    ciphertext: Mapped[bytes | None] = mapped_column(LargeBinary)
    sensitive: Mapped[bool] = mapped_column(Boolean, default=False)
    redactions: Mapped[int] = mapped_column(Integer, default=0)  # e-mail addresses and phone numbers removed
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class GenerationRow(Base):
    __tablename__ = "generations"
    __table_args__ = (
        CheckConstraint("kind IN ('text', 'image', 'music', 'audio')", name="generation_kind"),
        Index("ix_generations_user_time", "user_id", "created_at"),
        Index("ix_generations_model_time", "model_id", "created_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    prompt_id: Mapped[int | None] = mapped_column(ForeignKey("prompts.id"), index=True)
    user_id: Mapped[str] = mapped_column(String(128))
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id"))
    kind: Mapped[str] = mapped_column(String(16))
    parameters: Mapped[dict[str, Any]] = mapped_column(default=dict)
    seed: Mapped[int] = mapped_column(Integer)
    index: Mapped[int] = mapped_column(Integer, default=0)  # which of the request's n outputs
    text: Mapped[str | None] = mapped_column(Text)
    file_path: Mapped[str | None] = mapped_column(Text)  # relative to the store's media folder
    file_sha256: Mapped[str | None] = mapped_column(String(64))
    mime: Mapped[str | None] = mapped_column(String(64))
    scores: Mapped[dict[str, Any]] = mapped_column(default=dict)
    score: Mapped[float | None] = mapped_column(Float, index=True)  # the headline quality score, for filters
    context: Mapped[list[Any]] = mapped_column(default=list)  # ids of the RAG passages it was conditioned on
    latency_ms: Mapped[float] = mapped_column(Float, default=0.0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)


class FeedbackRow(Base):
    __tablename__ = "feedback"
    __table_args__ = (CheckConstraint("rating BETWEEN 1 AND 5", name="feedback_rating"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    generation_id: Mapped[int] = mapped_column(ForeignKey("generations.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[str] = mapped_column(String(128))
    rating: Mapped[int] = mapped_column(Integer)
    comment: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class UsageRow(Base):
    __tablename__ = "usage"
    __table_args__ = (Index("ix_usage_user_time", "user_id", "created_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[str] = mapped_column(String(128))
    model_id: Mapped[int | None] = mapped_column(ForeignKey("models.id"))
    endpoint: Mapped[str] = mapped_column(String(64))
    status: Mapped[int] = mapped_column(Integer)
    items: Mapped[int] = mapped_column(Integer, default=0)  # outputs generated
    latency_ms: Mapped[float] = mapped_column(Float, default=0.0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)


class ApiKeyRow(Base):
    __tablename__ = "api_keys"
    __table_args__ = (CheckConstraint("role IN ('admin', 'editor', 'viewer')", name="api_key_role"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    key_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))  # the key's first characters, to tell keys apart in lists
    user_id: Mapped[str] = mapped_column(String(128))
    role: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column()


class CollectionRow(Base):
    __tablename__ = "collections"
    __table_args__ = ({"sqlite_autoincrement": True},)  # ids of deleted collections are never reused

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class DocumentRow(Base):
    __tablename__ = "documents"
    # ids are never reused: a generation's context keeps naming the passages it used
    __table_args__ = (UniqueConstraint("collection_id", "sha256"), {"sqlite_autoincrement": True})

    id: Mapped[int] = mapped_column(primary_key=True)
    collection_id: Mapped[int] = mapped_column(ForeignKey("collections.id", ondelete="CASCADE"), index=True)
    source: Mapped[str] = mapped_column(Text)  # file name and passage number
    text: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class EmbeddingRow(Base):
    __tablename__ = "embeddings"
    __table_args__ = (UniqueConstraint("space", "owner_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    space: Mapped[str] = mapped_column(String(128), index=True)  # e.g. "generations/minilm-l6-v2"
    owner_id: Mapped[int] = mapped_column(Integer)  # a generation's or a document's id
    vector: Mapped[bytes] = mapped_column(LargeBinary)  # float32, L2-normalised
