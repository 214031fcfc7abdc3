"""genlab.data.music: the event encoding, MIDI round trips, the music tokenizer and music datasets."""

from __future__ import annotations

import pytest
from music21 import chord, corpus, midi, note, stream, tie

from genlab.data import music
from genlab.data.music import (
    ENCODING_VERSION,
    VOCAB,
    MusicTokenizer,
    decode_events,
    describe_events,
    encode_score,
    events_to_midi,
    load_music,
    midi_to_events,
)
from genlab.data.tokenizers import load_tokenizer
from genlab.errors import CheckpointError, DataError, UnknownNameError

# the module docstring's worked example
EXAMPLE = "S:72 dur:8 B:48 dur:4 wait:4 B:43 dur:4 wait:12 S:74 dur:16 wait:16 wait:4 S:72 dur:4 B:48 dur:4"


def _part(name: str | None, notes: list[tuple[float, object]]) -> stream.Part:
    """A Part holding (offset in quarters, Note/Chord) pairs."""
    part = stream.Part()
    if name:
        part.partName = name
    for offset, element in notes:
        part.insert(offset, element)
    return part


def _n(pitch: int, quarters: float) -> note.Note:
    return note.Note(pitch, quarterLength=quarters)


def _score(*parts: stream.Part) -> stream.Score:
    score = stream.Score()
    for part in parts:
        score.insert(0, part)
    return score


def _sounding_notes(score: stream.Stream) -> set[tuple[str, int, float, float]]:
    """(part name, MIDI pitch, onset, duration) of every note, in sixteenths, read straight from music21."""
    return {
        (part.partName, n.pitch.midi, float(n.offset) * 4, float(n.quarterLength) * 4)
        for part in score.parts
        for n in part.stripTies().flatten().notes
    }


@pytest.fixture(scope="module")
def chorales(tmp_path_factory):
    """The first three chorales, parsed once into a temporary cache."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GENLAB_CACHE", str(tmp_path_factory.mktemp("cache")))
        yield load_music("chorales", limit=3)


# --- the encoding --------------------------------------------------------------------------------
def test_worked_example_encodes_and_decodes_as_documented(tmp_path):
    assert " ".join(EXAMPLE.split()) in " ".join(music.__doc__.split())
    soprano = _part("Soprano", [(0, _n(72, 2)), (4, _n(74, 4)), (9, _n(72, 1))])
    bass = _part("Bass", [(0, _n(48, 1)), (1, _n(43, 1)), (9, _n(48, 1))])
    assert encode_score(_score(soprano, bass)) == EXAMPLE
    decoded = decode_events(EXAMPLE)
    assert [p.partName for p in decoded.parts] == ["Soprano", "Bass"]
    assert _sounding_notes(decoded) == {
        ("Soprano", 72, 0, 8), ("Bass", 48, 0, 4), ("Bass", 43, 4, 4),
        ("Soprano", 74, 16, 16), ("Soprano", 72, 36, 4), ("Bass", 48, 36, 4),
    }  # fmt: skip
    assert midi_to_events(events_to_midi(EXAMPLE, tmp_path / "example.mid")) == EXAMPLE


def test_hand_made_score_quantises_clamps_and_round_trips(tmp_path):
    first, second = _n(72, 1), _n(72, 1)
    first.tie, second.tie = tie.Tie("start"), tie.Tie("stop")
    soprano = _part(None, [(0, first), (1, second), (3, _n(74, 20))])  # tie, a quarter rest, 80 steps
    alto = _part(None, [(0, chord.Chord([60, 64, 67], quarterLength=2)), (2.3, _n(64, 0.7))])  # off-grid onset
    tenor = _part(None, [(0, _n(12, 1))])  # C0: below the piano, folded up an octave
    bass = _part(None, [(0, _n(40, 1).getGrace()), (0, _n(36, 4))])  # the grace note is dropped
    events = encode_score(_score(soprano, alto, tenor, bass))
    assert events == "S:72 dur:8 A:67 dur:8 T:24 dur:4 B:36 dur:16 wait:9 A:64 dur:3 wait:3 S:74 dur:64"
    assert midi_to_events(events_to_midi(events, tmp_path / "hand.mid")) == events


def test_voices_are_monophonic_and_long_gaps_are_several_waits():
    # two notes starting together in one voice keep the higher; an overlapping note is cut at the next onset
    soprano = _part(None, [(0, _n(60, 2)), (0, _n(64, 1)), (0.5, _n(62, 1)), (10, _n(65, 1))])
    assert encode_score(_score(soprano)) == "S:64 dur:2 wait:2 S:62 dur:4 wait:16 wait:16 wait:6 S:65 dur:4"
    # decoding applies the same rule, so any string's re-encoding is canonical
    assert encode_score(decode_events("S:60 dur:8 S:64 dur:8 wait:2 S:62 dur:1")) == "S:64 dur:2 wait:2 S:62 dur:1"


def test_chorales_round_trip_through_midi(chorales, tmp_path):
    assert len(chorales) == 3 and chorales.kind == "music" and chorales.name == "chorales"
    assert all(name.startswith("bwv") for name in chorales.item_names)
    assert chorales.source.startswith("music21 ") and "BSD-3" in chorales.licence
    for name, events in zip(chorales.item_names, chorales.documents, strict=True):
        assert events.split()[:2] != ["wait:1", "wait:1"]
        assert midi_to_events(events_to_midi(events, tmp_path / f"{name}.mid")) == events


def test_decoded_chorale_has_the_original_notes(chorales, tmp_path):
    name, events = chorales.item_names[0], chorales.documents[0]
    original = corpus.parse(f"bach/{name}")
    expected = {(part, pitch, onset, min(duration, 64)) for part, pitch, onset, duration in _sounding_notes(original)}
    assert _sounding_notes(decode_events(events)) == expected
    written = midi.translate.midiFilePathToStream(events_to_midi(events, tmp_path / "chorale.mid"))
    assert _sounding_notes(written) == expected


def test_strict_decoding_names_the_bad_word():
    with pytest.raises(DataError, match=r"unknown music event 'X:60' at word 3; events are wait:N"):
        decode_events("S:60 dur:4 X:60")
    with pytest.raises(DataError, match=r"'dur:4' at word 1 follows no note"):
        decode_events("dur:4 S:60 dur:4")
    with pytest.raises(DataError, match=r"note 'A:55' at word 3 has no duration: the next word is 'wait:2'"):
        decode_events("S:60 dur:4 A:55 wait:2")
    with pytest.raises(DataError, match=r"note 'S:60' at word 1 ends the piece"):
        decode_events("S:60")


def test_lenient_decoding_turns_any_output_into_midi(tmp_path):
    text = "<eos> dur:3 S:60 dur:4 A:55 wait:2 B:40 wait:0 dur:99 T:50 dur:2 S:62"
    path = events_to_midi(text, tmp_path / "generated.mid", strict=False)
    assert path.read_bytes()[:4] == b"MThd"
    assert midi_to_events(path) == "S:60 dur:4 wait:2 T:50 dur:2"
    assert describe_events(text)["skipped_words"] == 7
    assert events_to_midi("nothing usable", tmp_path / "silent.mid", strict=False).read_bytes()[:4] == b"MThd"


def test_describe_events():
    info = describe_events(EXAMPLE)
    assert info["notes"] == 6 and info["notes_per_voice"] == {"S": 3, "A": 0, "T": 0, "B": 3}
    assert info["length_quarters"] == 10.0  # the last notes end at step 40
    assert (info["lowest_pitch"], info["highest_pitch"]) == (43, 74) and info["skipped_words"] == 0


# --- the tokenizer -------------------------------------------------------------------------------
def test_tokenizer_vocabulary_is_fixed_and_ordered():
    tok = MusicTokenizer()
    assert tok.vocab_size == len(VOCAB) == 2 + 16 + 4 * 88 + 64 == 434
    assert VOCAB[:3] == ("<pad>", "<eos>", "wait:1") and VOCAB[18] == "S:21" and VOCAB[-1] == "dur:64"
    assert tok.eos_id == 1 and tok.pad_id == 0


def test_tokenizer_round_trip_and_unknown_word(chorales):
    tok = MusicTokenizer()
    ids = tok.encode(EXAMPLE)
    assert len(ids) == len(EXAMPLE.split()) and tok.decode(ids) == EXAMPLE
    assert tok.decode([tok.eos_id, *ids, tok.pad_id]) == EXAMPLE
    stream_ids = tok.encode_documents(chorales.documents)
    assert (stream_ids == tok.eos_id).sum() == 3
    with pytest.raises(DataError, match=r"unknown music event 'X:60' at word 3"):
        tok.encode("S:60 dur:4 X:60")
    with pytest.raises(DataError, match="token id 434 is outside"):
        tok.decode([434])


def test_tokenizer_saves_and_refuses_other_versions(tmp_path):
    path = MusicTokenizer().save(tmp_path)
    loaded = load_tokenizer(tmp_path)
    assert isinstance(loaded, MusicTokenizer) and loaded.encode(EXAMPLE) == MusicTokenizer().encode(EXAMPLE)
    assert MusicTokenizer().to_dict() == {"encoding_version": ENCODING_VERSION}
    path.write_text(f'{{"kind": "music", "encoding_version": {ENCODING_VERSION + 1}}}', encoding="utf-8")
    with pytest.raises(CheckpointError, match="encoding version 2"):
        load_tokenizer(tmp_path)


# --- datasets ------------------------------------------------------------------------------------
def test_chorales_are_cached_and_a_corrupt_cache_is_rebuilt(chorales, tmp_path, monkeypatch):
    monkeypatch.setenv("GENLAB_CACHE", str(tmp_path))
    first = load_music("chorales", limit=1)
    (cache,) = tmp_path.glob("chorales-*-1.json")
    assert first.documents == chorales.documents[:1]
    monkeypatch.setattr(music, "_parse_chorales", lambda limit: pytest.fail("parsed despite the cache"))
    assert load_music("chorales", limit=1) == first
    cache.write_text("{not json", encoding="utf-8")
    monkeypatch.undo()
    monkeypatch.setenv("GENLAB_CACHE", str(tmp_path))
    assert load_music("chorales", limit=1).documents == first.documents


def test_load_music_from_files_and_folders(tmp_path):
    folder = tmp_path / "pieces"
    events_to_midi("S:60 dur:4 wait:4 S:62 dur:4", folder / "b.mid")
    events_to_midi(EXAMPLE, folder / "sub" / "a.midi")
    decode_events("A:55 dur:8").write("musicxml", fp=folder / "c.musicxml")
    (folder / "notes.txt").write_text("not music", encoding="utf-8")
    data = load_music(folder)
    assert data.item_names == ("b.mid", "c.musicxml", "sub/a.midi") and data.kind == "music"
    assert data.documents == ("S:60 dur:4 wait:4 S:62 dur:4", "A:55 dur:8", EXAMPLE)
    assert load_music(folder, limit=2).item_names == ("b.mid", "c.musicxml")
    single = load_music(folder / "sub" / "a.midi")
    assert single.documents == (EXAMPLE,) and single.name == "a" and single.licence == "user"


def test_load_music_errors_name_the_problem(tmp_path):
    with pytest.raises(UnknownNameError, match=r"unknown dataset 'choral'.*Did you mean 'chorales'.*MIDI file"):
        load_music("choral")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="holds no music files"):
        load_music(tmp_path / "empty")
    folder = tmp_path / "some"
    events_to_midi(EXAMPLE, folder / "good.mid")
    (folder / "broken.mid").write_bytes(bytes(range(7, 250, 3)) * 3)
    with pytest.raises(DataError, match=r"cannot read .*broken\.mid as midi") as info:
        load_music(folder)
    assert "\n" not in str(info.value)
    with pytest.raises(DataError, match="cannot read"):
        midi_to_events(folder / "broken.mid")
    with pytest.raises(DataError, match=r"unsupported file type '\.wav'"):
        midi_to_events(tmp_path / "song.wav")
    with pytest.raises(DataError, match="limit=0"):
        load_music(folder, limit=0)
