"""Retrieval-augmented generation: chunking, collections, retrieval, the conditioning text, the
recorded context, and the `genlab rag` / `genlab generate --rag` commands."""

from __future__ import annotations

import itertools
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing here may reach the network
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import pytest
from sqlalchemy import func, select, text
from typer.testing import CliRunner

from genlab.cli import app
from genlab.errors import ConfigError, DataError, NotFoundError
from genlab.store import Document, Store, rag
from genlab.store.schema import DocumentRow, EmbeddingRow

# twenty short paragraphs on distinct topics, in characters the tiny Shakespeare GPT knows
TOPICS = [
    "Bees collect nectar from flowers and turn it into honey inside the hive.",
    "A volcano erupts when molten rock called magma rises through the crust.",
    "In chess the bishop moves diagonally and the rook moves along ranks and files.",
    "Ocean tides rise and fall twice a day because of the pull of the moon.",
    "Bakers knead dough and let the yeast ferment before baking bread in an oven.",
    "A guitar has six strings that are plucked or strummed to produce chords.",
    "Glaciers are slow rivers of ice that carve valleys into mountains over centuries.",
    "Python is a programming language known for readable code and indentation.",
    "Penguins are flightless birds that swim in the cold waters of Antarctica.",
    "Coffee beans are roasted and ground before hot water extracts the flavour.",
    "Mars is the red planet, with dusty deserts and a giant mountain, Olympus Mons.",
    "Tennis players serve the ball over a net and score points in games and sets.",
    "Plants use sunlight, water and carbon dioxide to produce sugar and oxygen.",
    "Steam locomotives burned coal to boil water and drive the wheels of the train.",
    "Rain forms when water vapour condenses into droplets heavy enough to fall.",
    "The pyramids of Giza were built as tombs for the pharaohs of ancient Egypt.",
    "A violin is played with a bow drawn across its four strings.",
    "Cheese comes from curdled milk, aged for weeks or years in a cool cellar.",
    "A lighthouse warns ships at night with a bright rotating lamp on the coast.",
    "Spiders spin silk webs to catch flying insects for food.",
]
HONEY = TOPICS[0]


@pytest.fixture
def store(tmp_path):
    with Store.open(tmp_path / "s.db") as s:
        yield s


@pytest.fixture
def topics_file(tmp_path):
    path = tmp_path / "topics.md"
    path.write_text("\n\n".join(TOPICS) + "\n")
    return path


@pytest.fixture
def topics(store, topics_file):
    """The twenty topics as one-paragraph passages of collection "topics"."""
    counts = rag.add_documents(store, "topics", [topics_file], chunk_chars=100, overlap=20)
    assert counts == {"added": 20, "skipped": 0, "passages": 20}
    return store


def _documents(store: Store, collection: str = "topics") -> list[Document]:
    with store.session() as s:
        rows = s.scalars(select(DocumentRow).order_by(DocumentRow.id))
        return [Document(r.id, collection, r.source, r.text) for r in rows]


# --- chunking ------------------------------------------------------------------------------------
def test_paragraphs_are_packed_up_to_chunk_chars():
    a, b, c = "a" * 30, "b b " * 7 + "b", "c" * 30
    text_ = f"{a}\n\n{b}\n   \n{c}\n\n\n"
    assert rag.split_passages(text_, chunk_chars=70, overlap=0) == [f"{a}\n\n{b}", c]
    # whitespace inside a paragraph collapses; nothing but whitespace gives no passage
    assert rag.split_passages("one\n  two\tthree", chunk_chars=20, overlap=0) == ["one two three"]
    assert rag.split_passages(" \n\n \n", chunk_chars=20, overlap=0) == []


def test_a_long_paragraph_is_split_at_sentences_with_overlap():
    sentences = [f"Sentence {w} tells of the {w} things it knows." for w in
                 ("first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth")]  # fmt: skip
    paragraph = " ".join(sentences)
    pieces = rag.split_passages(f"Short intro.\n\n{paragraph}\n\nShort outro.", chunk_chars=120, overlap=30)
    assert pieces[0] == "Short intro." and pieces[-1] == "Short outro."  # not packed with the split paragraph
    body = pieces[1:-1]
    assert len(body) > 2 and all(len(p) <= 120 for p in pieces)
    for sentence in sentences:  # every sentence is whole in some piece
        assert any(sentence in p for p in body)
    for before, after in itertools.pairwise(body):  # each piece starts with the end of the one before
        carried = after[: after.find("Sentence", 1)].strip()
        assert carried and before.endswith(carried) and len(carried) <= 30


def test_over_long_sentences_and_words_are_cut_within_chunk_chars():
    words = " ".join(f"word{i}" for i in range(100))  # one 600-character sentence
    pieces = rag.split_passages(words + " " + "x" * 250, chunk_chars=100, overlap=25)
    assert all(len(p) <= 100 for p in pieces)
    assert all(not p.startswith(" ") and not p.endswith(" ") for p in pieces)
    assert "word0" in pieces[0] and "word99" in " ".join(pieces) and sum(p.count("x") for p in pieces) >= 250
    assert pieces[1].split()[0] in pieces[0]  # the overlap carries whole words only


@pytest.mark.parametrize(("chunk_chars", "overlap"), [(10, 0), (100, 60), (100, -1), (100.0, 10)])
def test_bad_chunking_options_are_refused(chunk_chars, overlap):
    with pytest.raises(ConfigError, match=r"chunk_chars|overlap"):
        rag.split_passages("text", chunk_chars=chunk_chars, overlap=overlap)


# --- collections ---------------------------------------------------------------------------------
def test_add_stores_documents_fts_rows_and_embeddings_once(topics, topics_file, tmp_path):
    store = topics
    again = rag.add_documents(store, "topics", [topics_file], chunk_chars=100, overlap=20)
    assert again == {"added": 0, "skipped": 20, "passages": 20}
    more = tmp_path / "more.txt"
    more.write_text(f"{HONEY}\n\nOwls hunt mice at night with silent feathers.\n")
    assert rag.add_documents(store, "topics", [more, ("inline", HONEY)], chunk_chars=100, overlap=20) == {
        "added": 1, "skipped": 2, "passages": 3}  # fmt: skip
    docs = _documents(store)
    assert len(docs) == 21 and docs[0].source == f"{tmp_path / 'topics.md'}#1" and docs[0].text == HONEY
    with store.session() as s:
        fts = s.execute(text("SELECT rowid, text FROM documents_fts ORDER BY rowid")).all()
        spaces = s.scalars(select(EmbeddingRow.space).distinct()).all()
        embedded = s.scalar(select(func.count(EmbeddingRow.id)))
    assert [(d.id, d.text) for d in docs] == [tuple(row) for row in fts]
    assert spaces == ["documents/1/minilm-l6-v2"] and embedded == 21
    assert sorted(store._index(spaces[0]).ids()) == [d.id for d in docs]
    assert [(c["name"], c["documents"]) for c in rag.list_collections(store)] == [("topics", 21)]


def test_add_refuses_bad_input(store, tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        rag.add_documents(store, "c", [tmp_path / "missing.txt"])
    (tmp_path / "a.pdf").write_bytes(b"%PDF")
    with pytest.raises(DataError, match=r"\.txt or \.md"):
        rag.add_documents(store, "c", [tmp_path / "a.pdf"])
    with pytest.raises(DataError, match="no documents"):
        rag.add_documents(store, "c", [])
    with pytest.raises(DataError, match="no text"):
        rag.add_documents(store, "c", [("blank", " \n\n ")])
    for bad in ("", "two words", "a/b", "x" * 129):
        with pytest.raises(ConfigError, match="collection name"):
            rag.add_documents(store, bad, [("s", "text")])
    assert rag.list_collections(store) == []  # nothing half-made


# --- retrieval -----------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["keyword", "vector", "hybrid"])
def test_retrieve_finds_the_planted_passage_first(topics, mode):
    found = rag.retrieve(topics, "topics", "what do bees make", k=3, mode=mode)
    assert found[0].text == HONEY and found[0].collection == "topics"
    assert len(found) == (1 if mode == "keyword" else 3)  # only one passage shares a word with the query
    assert len({d.id for d in found}) == len(found)


def test_retrieve_stays_inside_its_collection(topics):
    rag.add_documents(topics, "other", [("bees.txt", "Bees make honey, says another collection.")])
    for mode in ("keyword", "vector", "hybrid"):
        assert {d.collection for d in rag.retrieve(topics, "topics", "bees honey", k=5, mode=mode)} == {"topics"}
        assert [d.source for d in rag.retrieve(topics, "other", "bees", k=5, mode=mode)] == ["bees.txt#1"]


def test_retrieve_errors_teach(topics):
    with pytest.raises(NotFoundError, match=r"no collection 'nope'; collections: topics\. .*genlab rag add"):
        rag.retrieve(topics, "nope", "bees")
    with pytest.raises(ConfigError, match="mode"):
        rag.retrieve(topics, "topics", "bees", mode="fuzzy")
    with pytest.raises(ConfigError, match="k=0"):
        rag.retrieve(topics, "topics", "bees", k=0)
    with pytest.raises(DataError, match="query"):
        rag.retrieve(topics, "topics", "  ")


# --- the conditioning text -----------------------------------------------------------------------
def test_rag_prompt_keeps_the_prompt_and_fits_passages_best_first():
    docs = [Document(7, "c", "a#1", "alpha beta gamma"), Document(3, "c", "a#2", "delta epsilon"),
            Document(9, "c", "a#3", "zeta")]  # fmt: skip
    assert rag.rag_prompt(docs, "Q?", max_chars=100) == ("alpha beta gamma\n\ndelta epsilon\n\nzeta\n\nQ?", [7, 3, 9])
    # room for the first passage and part of the second: cut at a word, the third dropped
    text_, ids = rag.rag_prompt(docs, "Q?", max_chars=16 + 2 + 7 + 4)
    assert (text_, ids) == ("alpha beta gamma\n\ndelta\n\nQ?", [7, 3])
    # the first passage cut; a cut that leaves no whole word uses no passage at all
    assert rag.rag_prompt(docs, "Q?", max_chars=14) == ("alpha beta\n\nQ?", [7])
    assert rag.rag_prompt(docs, "Q?", max_chars=8) == ("Q?", [])
    # the prompt is never cut, even when it alone is too long
    assert rag.rag_prompt(docs, "a long prompt", max_chars=5) == ("a long prompt", [])
    assert rag.rag_prompt(docs, None, max_chars=10) == ("alpha beta", [7])
    for budget in range(0, 60):
        text_, _ = rag.rag_prompt(docs, "Q?", max_chars=budget)
        assert len(text_) <= max(budget, 2)
    with pytest.raises(ConfigError, match="max_chars"):
        rag.rag_prompt(docs, "Q?", max_chars=-1)


# --- generation and its record ---------------------------------------------------------------------
def test_generation_records_exactly_the_passages_it_used(topics, gpt_run):
    import genlab

    model = genlab.load(gpt_run)
    retrieved = rag.retrieve(topics, "topics", "bees", k=3)
    texts, used = rag.generate_with_rag(topics, model, "bees", collection="topics", k=3, max_new_tokens=4,
                                        temperature=0, n=2, seed=5)  # fmt: skip
    assert len(texts) == 2 and all(isinstance(t, str) for t in texts)
    # the 32-token context less 4 new tokens leaves 28: "bees", a blank line and a cut honey passage
    assert [d.id for d in used] == [retrieved[0].id] and used[0].text == HONEY
    conditioning, ids = rag.fit_to_context(model, retrieved, "bees", 4)
    assert conditioning == "Bees collect nectar\n\nbees" and ids == [used[0].id]
    assert len(model.tokenizer.encode(conditioning)) <= 32 - 4
    parameters = {"max_new_tokens": 4, "temperature": 0, "rag": "topics", "rag_k": 3}
    rows = rag.record_text_generations(topics, gpt_run, "bees", texts, passages=used, parameters=parameters, seed=5)
    stored = topics.get_generation(rows[1].id)
    assert stored.context == [used[0].id] and stored.prompt == "bees" and stored.text == texts[1]
    assert stored.parameters == parameters and stored.seed == 5 and stored.index == 1
    # the run was registered under its directory's name, once
    rag.record_text_generations(topics, gpt_run, "bees", texts[:1], parameters={}, seed=0)
    assert [(m.name, m.path) for m in topics.list_models()] == [(gpt_run.name, str(gpt_run.resolve()))]


def test_generation_without_room_for_passages_says_why(topics, gpt_run):
    with pytest.raises(ConfigError, match=r"no room for retrieved passages.*lower max_new_tokens"):
        rag.generate_with_rag(topics, gpt_run, "bees", collection="topics", max_new_tokens=30)
    with pytest.raises(DataError, match="needs a prompt"):
        rag.generate_with_rag(topics, gpt_run, "", collection="topics", max_new_tokens=4)


# --- deletion ------------------------------------------------------------------------------------
def test_delete_collection_removes_everything(topics):
    rag.add_documents(topics, "other", [("owls.txt", "Owls hunt mice at night.")])
    rag.retrieve(topics, "topics", "bees", mode="vector")  # load the index into the store's cache
    space = "documents/1/minilm-l6-v2"
    index = topics._index(space)
    topics.flush()
    assert topics.indexes.path(space).exists()
    assert rag.delete_collection(topics, "topics") == 20
    with topics.session() as s:
        assert s.scalar(select(func.count(DocumentRow.id))) == 1
        assert s.scalar(text("SELECT count(*) FROM documents_fts")) == 1
        assert s.scalars(select(EmbeddingRow.space).distinct()).all() == ["documents/2/minilm-l6-v2"]
    assert len(index) == 0 and not topics.indexes.path(space).exists() and len(topics._index(space)) == 0
    assert [c["name"] for c in rag.list_collections(topics)] == ["other"]
    with pytest.raises(NotFoundError, match="collections: other"):
        rag.retrieve(topics, "topics", "bees")
    with pytest.raises(NotFoundError):
        rag.delete_collection(topics, "topics")
    # the name can be used again, and finds only the new passages
    rag.add_documents(topics, "topics", [("new.txt", "Bees dance to show where flowers are.")])
    assert [d.source for d in rag.retrieve(topics, "topics", "bees", k=5, mode="vector")] == ["new.txt#1"]


# --- command line --------------------------------------------------------------------------------
def test_cli_round_trip(tmp_path, topics_file, gpt_run):
    runner = CliRunner()
    db = str(tmp_path / "cli.db")

    def run(*args):
        result = runner.invoke(app, [*map(str, args)])
        assert result.exit_code == 0, (result.output, result.exception)
        return result.output

    assert "topics: added 20 of 20 passages (0 already there)" in run(
        "rag", "add", "topics", topics_file, "--chunk-chars", "100", "--overlap", "20", "--db", db)  # fmt: skip
    assert "added 0 of 20 passages (20 already there)" in run("rag", "add", "topics", topics_file,
                                                              "--chunk-chars", "100", "--overlap", "20",
                                                              "--db", db)  # fmt: skip
    listing = run("rag", "list", "--db", db)
    assert "topics" in listing and "20" in listing
    found = run("rag", "search", "topics", "what do bees make", "--k", "2", "--mode", "hybrid", "--db", db)
    assert found.index(HONEY) < found.index("2. ") and "1. " in found
    out = run("generate", gpt_run, "--prompt", "bees", "--rag", "topics", "--rag-k", "3", "--max-new-tokens", "4",
              "--temperature", "0", "--db", db)  # fmt: skip
    assert "conditioned on" in out and "topics.md#1" in out and "recorded generation" in out
    with Store.open(db) as store:
        (generation,) = store.list_generations()
        honey = rag.retrieve(store, "topics", "bees", k=1)[0]
    assert generation.context == [honey.id] and generation.prompt == "bees"
    assert generation.parameters["rag"] == "topics" and generation.parameters["rag_k"] == 3
    assert generation.parameters["max_new_tokens"] == 4 and generation.seed == 0
    run("generate", gpt_run, "--prompt", "bees", "--rag", "topics", "--max-new-tokens", "4", "--no-store", "--db", db)
    run("generate", gpt_run, "--prompt", "be", "--max-new-tokens", "4", "--store", "--db", db)  # no RAG, recorded
    with Store.open(db) as store:
        plain, _ = store.list_generations()
    assert plain.context == [] and "rag" not in plain.parameters and plain.prompt == "be"
    assert "deleted topics (20 passages)" in run("rag", "delete", "topics", "--db", db)
    assert "topics" not in run("rag", "list", "--db", db)


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (("rag", "search", "nope", "bees"), "no collection 'nope'; collections: none. Add one with `genlab rag add"),
        (("rag", "delete", "nope"), "no collection 'nope'"),
        (("rag", "add", "c", "{tmp}/missing.txt"), "missing.txt does not exist"),
        (("rag", "add", "bad name", "{tmp}/a.txt"), "collection name 'bad name'"),
        (("rag", "search", "c", "bees", "--mode", "fuzzy"), "mode 'fuzzy'"),
    ],
)
def test_cli_errors_are_one_line(cli, tmp_path, args, fragment):
    (tmp_path / "a.txt").write_text("Bees make honey.")
    db = tmp_path / "e.db"
    if args[:2] == ("rag", "search") and args[2] == "c":
        assert cli("rag", "add", "c", tmp_path / "a.txt", "--db", db)[0] == 0
    code, _, err = cli(*(a.format(tmp=tmp_path) for a in args), "--db", db)
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert code != 0 and len(lines) == 1 and "Traceback" not in err, err
    assert fragment in lines[0], lines[0]


def test_cli_generate_rag_errors_are_one_line(cli, tmp_path, gpt_run):
    db = tmp_path / "e.db"
    code, _, err = cli("generate", gpt_run, "--prompt", "bees", "--rag", "nope", "--db", db)
    assert code != 0 and len(err.strip().splitlines()) == 1 and "no collection 'nope'" in err
    code, _, err = cli("generate", gpt_run, "--prompt", "bees", "--rag", "nope", "--stream", "--db", db)
    assert code != 0 and len(err.strip().splitlines()) == 1 and "--stream" in err
