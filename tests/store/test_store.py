"""The store on SQLite and (when installed) PostgreSQL: registry, datasets, generations, privacy,
feedback, usage, keys, search, and what survives failures."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import numpy as np
import pytest
from sqlalchemy import func, select, text

from genlab.errors import AccessError, ConfigError, DataError, NotFoundError, StoreError
from genlab.store import GenerationFilter, Output, Store
from genlab.store.schema import GenerationRow, PromptRow

TEXTS = [
    "The bees make honey in the hive all summer long",
    "A horse, a horse, my kingdom for a horse",
    "Shall I compare thee to a summer's day",
    "The stock market fell sharply on Monday",
]


@pytest.fixture
def gpt(store, gpt_run):
    return store.register_model(gpt_run, "gpt")


def _record(store, model, texts, *, user="alice", **kwargs):
    outputs = [Output("text", text=t) for t in texts]
    return store.record_generations(outputs, model=model, user_id=user, parameters={"temperature": 0.8}, seed=7,
                                     **kwargs)  # fmt: skip


# --- registry --------------------------------------------------------------------------------------
def test_register_model_versions_and_idempotence(store, gpt_run, cvae_run):
    first = store.register_model(gpt_run, "shakespeare")
    assert (first.version, first.family, first.modality, first.dataset) == ("1", "gpt", "text", "shakespeare")
    assert len(first.weights_sha256) == 64 and first.metrics  # the run's evaluation, else its last validation
    assert store.register_model(gpt_run, "shakespeare") == first  # same weights: the same entry
    other = store.register_model(cvae_run, "shakespeare")  # other weights under the name: next version
    assert other.version == "2" and other.modality == "image"
    assert store.get_model("shakespeare").version == "2"  # latest by default
    assert store.get_model("shakespeare:1").id == first.id
    with pytest.raises(ConfigError, match="already registered with other weights"):
        store.register_model(gpt_run, "shakespeare", version="2")
    with pytest.raises(NotFoundError, match=r"no registered model 'nope'.*shakespeare.*genlab register"):
        store.get_model("nope")


# --- datasets ----------------------------------------------------------------------------------------
def test_datasets_keep_real_and_synthetic_apart(store, gpt, tmp_path):
    real = tmp_path / "real.txt"
    real.write_text("real data\n")
    fake = tmp_path / "fake"
    fake.mkdir()
    (fake / "a.txt").write_text("made by a model\n")
    r = store.register_dataset(real, "corpus")
    s = store.register_dataset(fake, "corpus-synth", kind="synthetic", model="gpt", seed=3)
    assert (r.kind, r.model_id, r.seed) == ("real", None, None)
    assert (s.kind, s.model_id, s.seed) == ("synthetic", gpt.id, 3)
    assert len(r.version) == 64 and r.version != s.version
    assert [d.name for d in store.list_datasets(kind="real")] == ["corpus"]
    with pytest.raises(ConfigError, match="records the model and seed"):
        store.register_dataset(fake, "x", kind="synthetic")
    with pytest.raises(ConfigError, match="never mixed"):
        store.register_dataset(real, "corpus", kind="synthetic", model="gpt", seed=1)
    with pytest.raises(ConfigError, match="real data has no generating model"):
        store.register_dataset(real, "corpus", model="gpt")
    # the database itself refuses a synthetic row without provenance (a CHECK constraint)
    with pytest.raises(Exception, match=r"(?i)check|constraint"), store.session() as session:
        session.execute(text("INSERT INTO datasets (name, version, kind, path, provenance, created_at) "
                             "VALUES ('bad', 'v', 'synthetic', 'p', '{}', CURRENT_TIMESTAMP)"))  # fmt: skip


# --- generations ---------------------------------------------------------------------------------------
def test_generations_record_reproduction_data_and_sessions(store, gpt):
    a = _record(store, gpt, TEXTS[:2], prompt="First prompt", session_id="chat-1")
    b = _record(store, gpt, TEXTS[2:3], prompt="Second prompt", session_id="chat-1")
    assert [g.index for g in a] == [0, 1] and {g.seed for g in a} == {7}
    assert a[0].parameters == {"temperature": 0.8} and a[0].model == "gpt:1"
    got = store.get_generation(a[1].id)
    assert got.text == TEXTS[1] and got.prompt == "First prompt" and got.session_id == "chat-1"
    assert got.created_at.tzinfo is not None
    with store.session() as s:  # the session's prompts are linked in order
        second = s.get(PromptRow, b[0].prompt_id)
        assert second.parent_id == a[0].prompt_id
    listed = store.list_generations(GenerationFilter(session_id="chat-1"))
    assert [g.id for g in listed] == [b[0].id, a[1].id, a[0].id]  # newest first


def test_filters(store, gpt, cvae_run):
    cvae = store.register_model(cvae_run, "cvae")
    _record(store, gpt, TEXTS[:2], user="alice")
    _record(store, gpt, TEXTS[2:], user="bob")
    image = store.record_generations([Output("image", data=b"\x89PNG fake", mime="image/png", scores={"score": 0.9})],
                                     model=cvae, user_id="bob", parameters={}, seed=1)  # fmt: skip
    assert len(store.list_generations(GenerationFilter(user_id="alice"))) == 2
    assert [g.id for g in store.list_generations(GenerationFilter(kind="image"))] == [image[0].id]
    assert [g.id for g in store.list_generations(GenerationFilter(model="cvae"))] == [image[0].id]
    assert [g.id for g in store.list_generations(GenerationFilter(min_score=0.5))] == [image[0].id]
    future = datetime.now(timezone.utc) + timedelta(hours=1)
    assert store.list_generations(GenerationFilter(since=future)) == []
    assert len(store.list_generations(GenerationFilter(until=future))) == 5
    assert len(store.list_generations(limit=2, offset=4)) == 1
    path = store.media_path(image[0])
    assert path.read_bytes() == b"\x89PNG fake" and image[0].file_sha256 in path.name
    with pytest.raises(NotFoundError, match="of yours"):
        store.get_generation(image[0].id, user_id="alice")


def test_media_tampering_is_detected(store, cvae_run):
    cvae = store.register_model(cvae_run, "cvae")
    (g,) = store.record_generations([Output("image", data=b"pixels", mime="image/png")], model=cvae, user_id="u",
                                    parameters={}, seed=0)  # fmt: skip
    store.media_path(g).write_bytes(b"altered")
    with pytest.raises(StoreError, match="missing or altered"):
        store.media_path(g)


def test_a_failed_write_leaves_nothing_behind(store, gpt, monkeypatch):
    _record(store, gpt, TEXTS[:1])
    index = store._index("generations/minilm-l6-v2")

    def fail(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(store, "_index_text", fail)  # fails after the prompt and generation rows are flushed
    with pytest.raises(RuntimeError, match="disk full"):
        _record(store, gpt, TEXTS[1:], prompt="p")
    monkeypatch.undo()
    with pytest.raises(ConfigError, match="output kind"):
        store.record_generations([Output("video", text="x")], model=gpt, user_id="u", parameters={}, seed=0)
    with pytest.raises(DataError, match="no outputs"):
        store.record_generations([], model=gpt, user_id="u", parameters={}, seed=0)
    with store.session() as s:
        assert s.scalar(select(func.count(GenerationRow.id))) == 1
        assert s.scalar(select(func.count(PromptRow.id))) == 0
    assert len(index) == 1  # the vector index never saw the rolled-back rows
    assert store.search("horse", mode="keyword") == []  # nor the full-text index


# --- privacy -------------------------------------------------------------------------------------------
def test_sensitive_prompts_are_encrypted_and_kept_out_of_search(store, gpt, monkeypatch):
    from genlab.store.privacy import PromptCipher

    key = PromptCipher.new_key()
    monkeypatch.setenv("GENLAB_FERNET_KEY", key)
    secret = "my diagnosis is hypertension"
    (g,) = _record(store, gpt, ["some output"], prompt=secret, sensitive=True)
    with store.session() as s:
        row = s.get(PromptRow, g.prompt_id)
        assert row.text is None and secret.encode() not in row.ciphertext and row.sensitive
        dump = " ".join(str(v) for v in s.execute(text("SELECT * FROM prompts")).one())
    assert "hypertension" not in dump
    assert store.get_generation(g.id).prompt is None
    assert store.get_generation(g.id, decrypt=True).prompt == secret
    assert store.search("hypertension", mode="keyword") == []
    # rotation: a new key first, the old one still decrypts
    monkeypatch.setenv("GENLAB_FERNET_KEY", f"{PromptCipher.new_key()},{key}")
    assert store.get_generation(g.id, decrypt=True).prompt == secret
    monkeypatch.setenv("GENLAB_FERNET_KEY", PromptCipher.new_key())
    with pytest.raises(StoreError, match="cannot be decrypted"):
        store.get_generation(g.id, decrypt=True)
    monkeypatch.delenv("GENLAB_FERNET_KEY")
    with pytest.raises(ConfigError, match="GENLAB_FERNET_KEY is not set"):
        _record(store, gpt, ["x"], prompt="another secret", sensitive=True)


def test_redaction_before_storage(store, gpt):
    (g,) = _record(store, gpt, ["ok"], prompt="mail jane.doe@example.org or call +1 (555) 123-4567 today",
                   redact_contacts=True)  # fmt: skip
    assert store.get_generation(g.id).prompt == "mail [email] or call [phone] today"


# --- feedback, usage, keys -------------------------------------------------------------------------------
def test_feedback_and_usage(store, gpt):
    (g,) = _record(store, gpt, TEXTS[:1], user="alice")
    store.add_feedback(g.id, user_id="bob", rating=4, comment="good")
    store.add_feedback(g.id, user_id="carol", rating=2)
    got = store.get_generation(g.id)
    assert (got.rating, got.num_feedback) == (3.0, 2)
    for bad in (0, 6, 2.5):
        with pytest.raises(ConfigError, match="1 to 5"):
            store.add_feedback(g.id, user_id="bob", rating=bad)
    with pytest.raises(NotFoundError):
        store.add_feedback(g.id, user_id="bob", rating=3, visible_to="bob")  # not bob's generation
    store.record_usage(user_id="alice", endpoint="POST /v1/generate", status=200, model_id=gpt.id, items=2,
                       latency_ms=10)  # fmt: skip
    store.record_usage_rows([dict(user_id="alice", endpoint="GET /v1/search", status=422, latency_ms=30)])
    search, generate = store.usage(bucket="day")  # one row per (day, user, model)
    assert (generate["model_id"], generate["requests"], generate["items"], generate["errors"]) == (gpt.id, 1, 2, 0)
    assert (search["model_id"], search["requests"], search["errors"], search["latency_ms"]) == (None, 1, 1, 30.0)


def test_api_keys_are_stored_hashed(store):
    record, key = store.create_key(role="editor", user_id="alice")
    assert key.startswith("gl_") and len(key) > 40
    assert store.authenticate(key).user_id == "alice"
    with store.session() as s:
        stored = " ".join(str(v) for v in s.execute(text("SELECT * FROM api_keys")).one())
    assert key not in stored
    with pytest.raises(ConfigError, match="not one of"):
        store.create_key(role="root", user_id="x")
    store.revoke_key(record.prefix)
    with pytest.raises(AccessError, match="revoked"):
        store.authenticate(key)
    with pytest.raises(AccessError):
        store.authenticate("gl_guess")


# --- search ----------------------------------------------------------------------------------------------
def test_keyword_vector_and_hybrid_search(store, gpt):
    gens = _record(store, gpt, TEXTS, user="alice")
    honey = gens[0].id
    keyword = store.search("honey hive", mode="keyword")
    assert keyword[0].generation.id == honey and keyword[0].ranks == {"keyword": 1}
    vector = store.search("insects producing something sweet", mode="vector", k=2)
    assert vector[0].generation.id == honey  # no shared words: found by meaning
    hybrid = store.search("summer", mode="hybrid", k=4)
    assert {h.generation.id for h in hybrid[:2]} == {gens[0].id, gens[2].id}  # both say "summer"
    assert store.search("'; DROP TABLE generations; --", mode="keyword") == []  # user input is never syntax
    like = store.search(None, like=gens[1].id, k=3)
    assert gens[1].id not in [h.generation.id for h in like] and len(like) == 3
    with pytest.raises(ConfigError, match="mode"):
        store.search("x", mode="fuzzy")
    with pytest.raises(DataError, match="give a search query"):
        store.search("  ")


def test_search_filters_apply_in_every_mode(store, gpt):
    _record(store, gpt, TEXTS[:2], user="alice")
    bob = _record(store, gpt, [TEXTS[0] + " again"], user="bob")
    for mode in ("keyword", "vector", "hybrid"):
        hits = store.search("honey", mode=mode, filters=GenerationFilter(user_id="bob"))
        assert [h.generation.id for h in hits] == [bob[0].id], mode


def test_vector_index_is_rebuilt_when_lost_or_stale(store, gpt, tmp_path):
    gens = _record(store, gpt, TEXTS)
    store.flush()
    (index_file,) = (store.home / "index").glob("*.faiss")
    reopened = Store.open(store.url, home=store.home, migrate=False)
    assert len(reopened._index(store.indexes.spaces()[0])) == 4
    reopened.close()
    index_file.write_bytes(b"garbage")  # a corrupt cache is rebuilt from the stored embeddings
    reopened = Store.open(store.url, home=store.home, migrate=False)
    hits = reopened.search("honey bees", mode="vector", k=1)
    assert hits[0].generation.id == gens[0].id
    reopened.close()


# --- the database ---------------------------------------------------------------------------------------
def test_schema_matches_models(store):
    """The migrations create exactly what the SQLAlchemy models describe (no drift)."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from genlab.store.schema import Base

    with store.engine.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    diff = [d for d in diff if "_fts" not in str(d)]  # the full-text tables/indexes live outside the models
    assert diff == []


def test_sqlite_defaults(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("GENLAB_DB", raising=False)
    with Store.open(embed=False) as store:
        assert store.url == f"sqlite:///{tmp_path / 'genlab.db'}"
        with store.engine.connect() as c:
            assert c.execute(text("PRAGMA journal_mode")).scalar() == "wal"
            assert c.execute(text("PRAGMA busy_timeout")).scalar() == 30000
            assert c.execute(text("PRAGMA foreign_keys")).scalar() == 1
    monkeypatch.setenv("GENLAB_DB", str(tmp_path / "other.db"))
    with Store.open(embed=False) as store:
        assert store.url.endswith("other.db") and store.home == tmp_path / "other.db.d"


def test_unknown_schema_revision_is_refused(tmp_path):
    path = tmp_path / "g.db"
    Store.open(path, embed=False).close()
    with Store.open(path, embed=False, migrate=False) as store, store.engine.begin() as c:
        c.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    with pytest.raises(StoreError, match=r"revision 9999.*newer genlab"):
        Store.open(path, embed=False)
    with pytest.raises(StoreError, match="cannot use database URL"):
        Store.open("nosuchdialect://x")


def test_concurrent_writers(tmp_path, gpt_run):
    """Threads writing at once all succeed (WAL + busy timeout) and nothing is lost."""
    from concurrent.futures import ThreadPoolExecutor

    store = Store.open(tmp_path / "g.db", embed=False)
    model = store.register_model(gpt_run, "gpt")

    def write(i: int) -> int:
        outputs = [Output("text", text=f"output {i}")]
        (g,) = store.record_generations(outputs, model=model, user_id=f"u{i % 5}", parameters={"i": i}, seed=i,
                                        prompt=f"prompt {i}", session_id=f"s{i % 3}")  # fmt: skip
        store.record_usage(user_id=f"u{i % 5}", endpoint="POST /v1/generate", status=200)
        return g.id

    with ThreadPoolExecutor(8) as pool:
        ids = list(pool.map(write, range(80)))
    assert len(set(ids)) == 80
    assert len(store.list_generations(limit=200)) == 80
    assert sum(r["requests"] for r in store.usage()) == 80
    store.close()


def test_rows_are_plain_numbers(store, gpt):
    (g,) = _record(store, gpt, ["x"])
    assert isinstance(g.latency_ms, float) and isinstance(g.seed, int)
    assert np.isfinite(g.latency_ms)


def test_a_second_process_sees_new_embeddings(store, gpt):
    """Generations recorded through another Store (the CLI beside the service) reach this one's
    vector search without a restart."""
    _record(store, gpt, TEXTS[:2])
    assert len(store.search("kingdom horse", mode="vector", k=5)) == 2
    other = Store.open(store.url, home=store.home, migrate=False)
    (new,) = other.record_generations([Output("text", text="bees and honey and wax")], model=gpt, user_id="cli",
                                      parameters={}, seed=0)  # fmt: skip
    other.close()
    hits = store.search("honey", mode="vector", k=5)
    assert new.id in [h.generation.id for h in hits]


def test_image_embeddings_use_the_domain_network_else_the_model_encoder(store, vae_run, monkeypatch):
    """Images of a bundled dataset are embedded by its domain network; a model trained on data
    without one (here: pretend) is embedded by its own encoder, so `like=` search works for both."""
    import genlab
    from genlab.store import embeddings

    images = genlab.sample(genlab.load(vae_run), 4, seed=0)
    outputs = [Output("image", data=img.tobytes(), mime="image/png", embedding_source=img) for img in images]
    domain = store.register_model(vae_run, "vae")
    first = store.record_generations(outputs, model=domain, user_id="u", parameters={}, seed=0)
    monkeypatch.setattr(embeddings, "shipped_domain_datasets", lambda: ())
    encoder = store.register_model(vae_run, "vae-own", version="2")
    second = store.record_generations(outputs, model=encoder, user_id="u", parameters={}, seed=0)
    spaces = set(store.indexes.spaces())
    assert {"generations/domain-digits", "generations/encoder-vae-own-2"} <= spaces
    near = store.search(None, like=second[0].id, k=3)
    assert {h.generation.id for h in near} <= {g.id for g in second[1:]}  # its own space only
    assert len(store.search(None, like=first[0].id, k=3)) == 3
