"""Stores to test against: SQLite always; a real PostgreSQL server when one is installed."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile

import pytest


def _pg_binary(name: str) -> str | None:
    found = shutil.which(name) or sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return found if isinstance(found, str) else (found[-1] if found else None)


@pytest.fixture(scope="session")
def postgres_url():
    """A throwaway PostgreSQL cluster on a Unix socket (skipped when PostgreSQL or psycopg is missing)."""
    pytest.importorskip("psycopg", reason="psycopg is not installed")
    initdb, pg_ctl = _pg_binary("initdb"), _pg_binary("pg_ctl")
    if not (initdb and pg_ctl):
        pytest.skip("PostgreSQL (initdb, pg_ctl) is not installed")
    root = tempfile.mkdtemp(prefix="genlab-pg-")
    as_user: list[str] = []
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root
        as_user = ["runuser", "-u", "postgres", "--"]
        shutil.chown(root, "postgres")
    os.chmod(root, 0o755)
    data = os.path.join(root, "data")
    try:
        subprocess.run([*as_user, initdb, "-D", data, "-A", "trust", "-U", "genlab", "--no-sync"], check=True,
                       capture_output=True)  # fmt: skip
        options = f"-k {root} -c listen_addresses='' -c fsync=off"
        subprocess.run([*as_user, pg_ctl, "-D", data, "-w", "-l", os.path.join(root, "log"), "-o", options, "start"],
                       check=True, capture_output=True)  # fmt: skip
    except (subprocess.CalledProcessError, OSError) as exc:
        shutil.rmtree(root, ignore_errors=True)
        pytest.skip(f"could not start PostgreSQL: {exc}")
    try:
        yield f"postgresql+psycopg://genlab@/postgres?host={root}"
    finally:
        subprocess.run([*as_user, pg_ctl, "-D", data, "-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path):
    """An empty store (with embeddings, for search), on each database."""
    from sqlalchemy import text

    from genlab.store import Store

    if request.param == "sqlite":
        s = Store.open(tmp_path / "genlab.db", home=tmp_path / "home")
    else:
        url = request.getfixturevalue("postgres_url")
        s = Store.open(url, home=tmp_path / "home", migrate=False)
        with s.engine.begin() as c:  # a fresh schema per test
            c.execute(text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
        from genlab.store import db

        db.upgrade(s.engine)
    yield s
    s.close()
