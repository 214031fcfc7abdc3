"""Atomic writes and file hashes."""

from __future__ import annotations

import hashlib
import os
import stat

import pytest

from genlab import io


def test_atomic_write_gives_an_ordinary_file_mode_and_leaves_nothing_on_failure(tmp_path):
    path = io.write_json(tmp_path / "a.json", {"x": 1})
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o666 & ~io._UMASK
    with pytest.raises(RuntimeError), io.atomic_path(tmp_path / "b.txt") as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed mid-write")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json"]


def test_file_sha256_matches_hashlib(tmp_path):
    data = os.urandom(3 << 20)  # several read chunks
    (tmp_path / "f").write_bytes(data)
    assert io.file_sha256(tmp_path / "f") == hashlib.sha256(data).hexdigest()
