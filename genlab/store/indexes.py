"""The store's vector indexes: one FAISS index per embedding space (``generations/minilm-l6-v2``,
``generations/domain-mnist``, ``documents/3/minilm-l6-v2``…), kept as files beside the database.

They are caches. The vectors themselves are rows of the ``embeddings`` table, written in the same
transaction as what they embed, so an index file that is missing, corrupt or out of date is rebuilt
or brought up to date from the database, and rows that another process (the CLI beside the service)
stored since are picked up on the next use.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from genlab.errors import StoreError
from genlab.store.schema import EmbeddingRow
from genlab.store.vectors import VectorIndex

logger = logging.getLogger(__name__)

FETCH_CHUNK = 10_000  # ids per IN list when loading vectors


class Indexes:
    """The vector indexes of one store, loaded on first use; safe to share between threads."""

    def __init__(self, session: Callable[[], AbstractContextManager[Session]], folder: Path) -> None:
        self._session = session
        self.folder = folder
        self._indexes: dict[str, VectorIndex] = {}
        self._lock = threading.Lock()

    def spaces(self) -> list[str]:
        """The spaces whose indexes are loaded."""
        with self._lock:
            return sorted(self._indexes)

    def get(self, space: str) -> VectorIndex:
        """The index of ``space``, in step with the database: loaded from its file (rebuilt when that
        is missing or corrupt) and given what was stored since. In step, that costs one COUNT."""
        with self._lock:
            index = self._indexes.get(space)
            if index is None:
                path = self.path(space)
                try:
                    index = VectorIndex.load(path, self._dim(space))
                except Exception as exc:  # a cache: any problem with the file means rebuild it
                    logger.warning("rebuilding the vector index %s: %s", path, exc)
                    index = VectorIndex(self._dim(space))
                self._indexes[space] = index
                self._sync(space, index, full=True)
            else:
                self._sync(space, index)
            return index

    def add(self, space: str, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Vectors this process has just committed: added to the space's index directly, without the
        sync a search does (which would read every id of the space once the counts differ)."""
        with self._lock:
            index = self._indexes.get(space)
        if index is None:
            index = self.get(space)  # loads it, already with these rows
        index.add(ids, vectors)

    def drop(self, space: str) -> None:
        """Forget a deleted space's index: emptied (for anyone still holding it), out of the cache
        and off the disk."""
        with self._lock:
            index = self._indexes.pop(space, None)
        if index is not None:
            index.remove(index.ids())
        self.path(space).unlink(missing_ok=True)

    def flush(self) -> None:
        """Write the loaded indexes to their files."""
        with self._lock:
            for space, index in self._indexes.items():
                path = self.path(space)
                path.parent.mkdir(parents=True, exist_ok=True)
                index.save(path)

    def path(self, space: str) -> Path:
        return self.folder / (space.replace("/", "--") + ".faiss")

    def _sync(self, space: str, index: VectorIndex, *, full: bool = False) -> None:
        """Remove what the database no longer holds and add what the index lacks."""
        owner = EmbeddingRow.owner_id
        in_space = EmbeddingRow.space == space
        with self._session() as s:
            if not full and s.scalar(select(func.count()).select_from(EmbeddingRow).where(in_space)) == len(index):
                return
            stored = set(s.scalars(select(owner).where(in_space)))
            held = set(index.ids().tolist())
            if held - stored:
                index.remove(np.fromiter(held - stored, dtype=np.int64))
            missing = sorted(stored - held)
            for start in range(0, len(missing), FETCH_CHUNK):
                chunk = missing[start : start + FETCH_CHUNK]
                rows = s.execute(select(owner, EmbeddingRow.vector).where(in_space, owner.in_(chunk)))
                ids, vectors = zip(*[(i, np.frombuffer(blob, dtype=np.float32)) for i, blob in rows], strict=True)
                index.add(np.array(ids), np.stack(vectors))

    def _dim(self, space: str) -> int:
        """The dimension of a space's vectors: a stored one's, else the text embedder's."""
        with self._session() as s:
            blob = s.scalar(select(EmbeddingRow.vector).where(EmbeddingRow.space == space).limit(1))
        if blob is not None:
            return len(blob) // 4  # float32
        from genlab.store.embeddings import text_embedder

        if space.endswith(text_embedder().name):
            return text_embedder().dim
        raise StoreError(f"no stored embeddings in space {space!r} to size its index.")
