"""What the store hands back: plain frozen dataclasses, detached from any database session, that
turn into JSON with :func:`as_json`."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


def as_json(record: Any) -> dict[str, Any]:
    """A record as a JSON-ready dict (datetimes in ISO 8601)."""
    out = dataclasses.asdict(record)
    for key, value in out.items():
        if isinstance(value, datetime):
            out[key] = value.isoformat()
    return out


@dataclass(frozen=True)
class ModelInfo:
    id: int
    name: str
    version: str
    family: str
    recipe: str | None
    modality: str  # text | image | music | audio
    path: str
    weights_sha256: str
    metrics: dict[str, Any]
    created_at: datetime
    dataset: str | None = None  # the training data's name (bundled datasets have domain feature networks)


@dataclass(frozen=True)
class DatasetInfo:
    id: int
    name: str
    version: str
    kind: str  # real | synthetic
    path: str
    num_items: int | None
    model_id: int | None
    seed: int | None
    provenance: dict[str, Any]
    created_at: datetime


@dataclass(frozen=True)
class Output:
    """One generated item, before it is stored: text inline, or a file's bytes (PNG, WAV, MIDI)."""

    kind: str  # text | image | music | audio
    text: str | None = None
    data: bytes | None = None
    mime: str | None = None
    scores: dict[str, float] = field(default_factory=dict)
    embedding_source: Any = None  # what to embed for search (an image array), when not the text


@dataclass(frozen=True)
class Generation:
    id: int
    user_id: str
    model: str  # name:version
    model_id: int
    kind: str
    prompt: str | None  # None when there was none, or it is sensitive and not decrypted
    prompt_id: int | None
    session_id: str | None
    sensitive: bool
    parameters: dict[str, Any]
    seed: int
    index: int
    text: str | None
    file_path: str | None
    file_sha256: str | None
    mime: str | None
    scores: dict[str, Any]
    context: list[Any]
    latency_ms: float
    created_at: datetime
    rating: float | None = None  # mean feedback rating
    num_feedback: int = 0


@dataclass(frozen=True)
class Feedback:
    id: int
    generation_id: int
    user_id: str
    rating: int
    comment: str | None
    created_at: datetime


@dataclass(frozen=True)
class ApiKey:
    id: int
    prefix: str
    user_id: str
    role: str
    created_at: datetime
    revoked_at: datetime | None


@dataclass(frozen=True)
class Document:
    id: int
    collection: str
    source: str
    text: str


@dataclass(frozen=True)
class SearchHit:
    generation: Generation
    score: float
    ranks: dict[str, int]  # the hit's rank (from 1) in each ranking that found it


@dataclass(frozen=True)
class GenerationFilter:
    """Which generations a listing or search may return. ``user_id`` set: that user's only."""

    model: str | None = None  # name, or name:version
    user_id: str | None = None
    kind: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    min_score: float | None = None
    session_id: str | None = None
