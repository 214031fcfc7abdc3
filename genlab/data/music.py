"""Symbolic music as text: an invertible event encoding, its fixed-vocabulary tokenizer, MIDI in and out.

Language models (GPT, LSTM) learn music as a sequence of *event words*. A piece is one string of
space-separated words on a sixteenth-note grid (one step = quarterLength 0.25), in up to four
voices S, A, T, B:

- ``wait:N`` advances time by N sixteenths, N in 1..16; a longer gap is several waits (``wait:16 wait:4``);
- ``S:60`` (or ``A:``, ``T:``, ``B:``) starts a note of that voice at that MIDI pitch, 21..108 (A0..C8);
- ``dur:N`` is the duration of the note just before it, N in 1..64 sixteenths (a whole note is 16).

A note is always the pair ``<voice>:<pitch> dur:<N>``. Events run in time order and the notes of one
onset are listed in voice order S, A, T, B. Rests are simply gaps: there is no rest word, and no
begin/end word (the tokenizer's ``<eos>`` separates pieces).

Worked example. Soprano C5 as a half note over bass C3 and G2 as quarters, a half-note rest in the
soprano while the bass is silent, soprano D5 as a whole note, then five quarters later soprano and bass
together on C5 and C3 for a quarter:

=====  ==========================  ===========================================
step   notes                       words
=====  ==========================  ===========================================
0      S C5 (72) 8 steps,          ``S:72 dur:8 B:48 dur:4``
       B C3 (48) 4 steps
4      B G2 (43) 4 steps           ``wait:4 B:43 dur:4``
16     S D5 (74) 16 steps          ``wait:12 S:74 dur:16``
36     S C5 4 steps, B C3 4 steps  ``wait:16 wait:4 S:72 dur:4 B:48 dur:4``
=====  ==========================  ===========================================

so the piece is ``S:72 dur:8 B:48 dur:4 wait:4 B:43 dur:4 wait:12 S:74 dur:16 wait:16 wait:4 S:72 dur:4
B:48 dur:4`` (a gap of 20 steps is ``wait:16 wait:4``: full waits first, then the remainder).

From a score to events (:func:`encode_score`), in this order:

1. voices: the first four parts of the score in score order become S, A, T, B, except that parts named
   Soprano/Alto/Tenor/Bass (any case) keep their names' voices, so a piece with only S and B written to
   MIDI comes back as S and B;
2. ties are merged (``stripTies``), grace notes and unpitched (drum) notes dropped, and a chord keeps
   its highest note;
3. quantisation: each note's onset and end are rounded to the nearest sixteenth, halves rounding up;
   the duration is end − onset, at least one step. (Rounding the end rather than the duration keeps
   legato lines legato: three triplet eighths become 1 + 2 + 1 steps, with no gap.)
4. each voice is made monophonic: of notes starting on the same step in one voice the highest is kept,
   and a note still sounding when the next note of its voice starts is cut at that onset;
5. a duration longer than 64 steps (four 4/4 bars) is clamped to 64; a pitch outside 21..108 is moved
   by octaves into range. Bars, time and key signatures, tempo, dynamics and repeats are not encoded.

Decoding (:func:`decode_events`) gives one Part per voice used, named Soprano/Alto/Tenor/Bass (vocal
"instruments", General MIDI "voice oohs" in a MIDI file), in 4/4 at quarter = 90 (a moderate chorale
tempo; the encoding has no time signature or tempo). Decoding applies the same step 4, so for any
string E the encoder produced, ``midi_to_events(events_to_midi(E, path)) == E``. Model output can be
malformed: ``strict=False`` drops every word that does not fit the grammar (an unknown word, a ``dur:``
with no note before it, a note not directly followed by its ``dur:``), so any string becomes a score.
"""

from __future__ import annotations

import importlib.metadata
import json
import logging
import math
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple

from genlab.data.tokenizers import Tokenizer, check_ids, register_tokenizer
from genlab.errors import CheckpointError, DataError, unknown
from genlab.io import atomic_path, write_json

if TYPE_CHECKING:  # music21 takes ~0.3 s to import; loading a tokenizer must not pay it
    from music21 import stream

    from genlab.data.text import TextData

logger = logging.getLogger(__name__)

ENCODING_VERSION = 1
STEPS_PER_QUARTER = 4  # the grid: sixteenth notes
MAX_WAIT = 16
MAX_DURATION = 64
LOWEST_PITCH, HIGHEST_PITCH = 21, 108  # the piano's range, A0..C8
VOICES = ("S", "A", "T", "B")
VOICE_NAMES = ("Soprano", "Alto", "Tenor", "Bass")
DEFAULT_TEMPO_BPM = 90.0
#: file suffix → music21 format name; what load_music and midi_to_events read
MUSIC_SUFFIXES = {
    ".mid": "midi", ".midi": "midi", ".mxl": "musicxml", ".musicxml": "musicxml", ".xml": "musicxml",
    ".krn": "humdrum", ".abc": "abc",
}  # fmt: skip
_GRAMMAR = "events are wait:N (N 1..16), S|A|T|B:PITCH (21..108) and dur:N (1..64) (see genlab.data.music)"


class _Note(NamedTuple):
    """One note on the grid; sorting gives the event order (onset, then voice S, A, T, B)."""

    onset: int  # sixteenths from the start of the piece
    voice: int  # 0..3 = S, A, T, B
    pitch: int  # MIDI number
    duration: int  # sixteenths


# --- the vocabulary ------------------------------------------------------------------------------
# Stable order, part of ENCODING_VERSION: <pad>, <eos>, wait:1..16, S:21..108, A:…, T:…, B:…, dur:1..64.
VOCAB: tuple[str, ...] = (
    "<pad>",
    "<eos>",
    *(f"wait:{n}" for n in range(1, MAX_WAIT + 1)),
    *(f"{v}:{p}" for v in VOICES for p in range(LOWEST_PITCH, HIGHEST_PITCH + 1)),
    *(f"dur:{n}" for n in range(1, MAX_DURATION + 1)),
)
_WORD_ID = {word: i for i, word in enumerate(VOCAB)}


def _word_meaning(word: str) -> tuple[str, int, int] | None:
    """("wait", N, 0), ("note", voice, pitch), ("dur", N, 0), or None for anything outside the vocabulary."""
    if word not in _WORD_ID or word.startswith("<"):
        return None
    head, value = word.split(":")
    if head in ("wait", "dur"):
        return head, int(value), 0
    return "note", VOICES.index(head), int(value)


# --- notes ↔ events text --------------------------------------------------------------------------
def _monophonic(notes: Iterable[_Note]) -> list[_Note]:
    """Step 4 and 5 of the encoding: per voice one note per onset (the highest), each cut at the next
    onset of its voice and clamped to MAX_DURATION; sorted in event order."""
    by_start: dict[tuple[int, int], _Note] = {}
    for n in notes:
        key = (n.voice, n.onset)
        if key not in by_start or n.pitch > by_start[key].pitch:
            by_start[key] = n
    out: list[_Note] = []
    for voice in range(len(VOICES)):
        line = sorted(n for n in by_start.values() if n.voice == voice)
        for i, n in enumerate(line):
            next_onset = line[i + 1].onset if i + 1 < len(line) else n.onset + MAX_DURATION
            out.append(n._replace(duration=min(n.duration, MAX_DURATION, next_onset - n.onset)))
    return sorted(out)


def _notes_to_text(notes: list[_Note]) -> str:
    words: list[str] = []
    now = 0
    for n in notes:
        gap = n.onset - now
        words += [f"wait:{MAX_WAIT}"] * (gap // MAX_WAIT) + ([f"wait:{gap % MAX_WAIT}"] if gap % MAX_WAIT else [])
        words += [f"{VOICES[n.voice]}:{n.pitch}", f"dur:{n.duration}"]
        now = n.onset
    return " ".join(words)


def _unknown_word(word: str, position: int) -> DataError:
    return DataError(f"unknown music event {word!r} at word {position}; {_GRAMMAR}")


def _parse_events(text: str, *, strict: bool) -> tuple[list[_Note], int]:
    """Read event words into notes; returns (notes, number of malformed words skipped).

    ``strict=False`` drops every word that does not fit the grammar: unknown words, a ``dur:`` with no
    note before it, and a note not directly followed by its ``dur:``.
    """
    notes: list[_Note] = []
    skipped = 0
    now = 0
    pending: tuple[int, int, str, int] | None = None  # (voice, pitch, word, position) awaiting its dur:
    for position, word in enumerate(text.split(), start=1):
        meaning = _word_meaning(word)
        if meaning is None and strict:
            raise _unknown_word(word, position)
        if pending is not None and (meaning is None or meaning[0] != "dur"):
            if strict:
                raise DataError(
                    f"note {pending[2]!r} at word {pending[3]} has no duration: the next word is {word!r}, "
                    "not dur:N; every note is '<voice>:<pitch> dur:<N>' (decode with strict=False to skip it)."
                )
            pending, skipped = None, skipped + 1
        if meaning is None:
            skipped += 1
        elif meaning[0] == "wait":
            now += meaning[1]
        elif meaning[0] == "note":
            pending = (meaning[1], meaning[2], word, position)
        elif pending is None:  # a dur: with no note before it
            if strict:
                raise DataError(
                    f"{word!r} at word {position} follows no note; every note is '<voice>:<pitch> dur:<N>' "
                    "(decode with strict=False to skip it)."
                )
            skipped += 1
        else:
            notes.append(_Note(now, pending[0], pending[1], meaning[1]))
            pending = None
    if pending is not None:
        if strict:
            raise DataError(
                f"note {pending[2]!r} at word {pending[3]} ends the piece without its dur:N "
                "(decode with strict=False to skip it)."
            )
        skipped += 1
    return notes, skipped


# --- scores ↔ notes -------------------------------------------------------------------------------
def _step(quarters: float) -> int:
    """Nearest sixteenth, halves rounding up (Python's round() would round halves to even)."""
    return math.floor(float(quarters) * STEPS_PER_QUARTER + 0.5)


def _fold_pitch(pitch: int) -> int:
    while pitch < LOWEST_PITCH:
        pitch += 12
    while pitch > HIGHEST_PITCH:
        pitch -= 12
    return pitch


def _voice_parts(score: stream.Stream) -> list[tuple[int, stream.Stream]]:
    """(voice index, part) for the first four parts: by name when they are named Soprano..Bass, else in order."""
    parts = list(score.parts)[: len(VOICES)] if score.hasPartLikeStreams() else [score]
    names = [(getattr(p, "partName", None) or "").strip().lower() for p in parts]
    by_name = [n.capitalize() for n in names]
    if all(n in VOICE_NAMES for n in by_name) and len(set(by_name)) == len(by_name):
        return [(VOICE_NAMES.index(n), p) for n, p in zip(by_name, parts, strict=True)]
    return list(enumerate(parts))


def _score_notes(score: stream.Stream) -> list[_Note]:
    from music21 import chord, note

    notes: list[_Note] = []
    for voice, part in _voice_parts(score):
        # flatten first: 1.5× faster than stripping ties measure by measure, same notes on all 371 chorales
        for element in part.flatten().stripTies(inPlace=False).notes:
            if element.duration.isGrace or element.quarterLength <= 0:
                continue
            if isinstance(element, note.Note):
                pitch = element.pitch.midi
            elif isinstance(element, chord.Chord) and element.pitches:
                pitch = max(p.midi for p in element.pitches)
            else:  # unpitched percussion
                continue
            onset = _step(element.offset)
            end = _step(element.offset + element.quarterLength)
            notes.append(_Note(onset, voice, _fold_pitch(pitch), max(1, end - onset)))
    return _monophonic(notes)


def encode_score(score: stream.Stream) -> str:
    """A music21 Score (or Part, or any Stream of notes) → event words (see the module docstring)."""
    from music21 import stream

    if isinstance(score, stream.Opus):
        raise DataError(f"this Opus holds {len(score.scores)} pieces; encode each of opus.scores on its own.")
    return _notes_to_text(_score_notes(score))


def decode_events(text: str, *, strict: bool = True, tempo_bpm: float = DEFAULT_TEMPO_BPM) -> stream.Score:
    """Event words → a music21 Score with one Part per voice used (Soprano, Alto, Tenor, Bass), 4/4.

    ``strict=True`` raises :class:`DataError` naming the first malformed word; ``strict=False`` (for model
    output) skips malformed words as :func:`_parse_events` describes, so any string gives a score.
    """
    from music21 import instrument, meter, note, stream, tempo

    if not tempo_bpm > 0:
        raise DataError(f"tempo_bpm={tempo_bpm} must be a positive number of quarter notes per minute.")
    notes, _ = _parse_events(text, strict=strict)
    score = stream.Score()
    vocal = (instrument.Soprano, instrument.Alto, instrument.Tenor, instrument.Bass)
    for voice in sorted({n.voice for n in notes}):
        part = stream.Part(id=VOICE_NAMES[voice])
        part.partName = VOICE_NAMES[voice]
        part.insert(0, vocal[voice]())  # its name becomes the MIDI track name, read back by _voice_parts
        part.insert(0, meter.TimeSignature("4/4"))
        for n in _monophonic(n for n in notes if n.voice == voice):
            part.insert(n.onset / STEPS_PER_QUARTER, note.Note(n.pitch, quarterLength=n.duration / STEPS_PER_QUARTER))
        score.insert(0, part)
    if score.parts:
        score.parts[0].insert(0, tempo.MetronomeMark(number=tempo_bpm))
    return score


# --- files ----------------------------------------------------------------------------------------
def events_to_midi(text: str, path: str | Path, *, strict: bool = True, tempo_bpm: float = DEFAULT_TEMPO_BPM) -> Path:
    """Write event words as a standard MIDI file (atomically); returns the path. ``strict`` as in
    :func:`decode_events`; a string with no decodable note gives a valid silent file."""
    from music21 import midi, stream

    score = decode_events(text, strict=strict, tempo_bpm=tempo_bpm)
    if not score.parts:  # nothing decodable: still a valid (silent) file
        score.insert(0, stream.Part(id=VOICE_NAMES[0]))
    midi_file = midi.translate.streamToMidiFile(score)
    with atomic_path(path) as tmp:
        midi_file.open(str(tmp), "wb")
        try:
            midi_file.write()
        finally:
            midi_file.close()
    return Path(path)


def _read_pieces(path: Path) -> list[stream.Stream]:
    """Parse one music file into its pieces (an .abc tune book holds several); one-line DataError on failure."""
    from music21 import converter, stream

    fmt = MUSIC_SUFFIXES.get(path.suffix.lower())
    if fmt is None:
        raise DataError(f"{path}: unsupported file type {path.suffix!r}; give one of {', '.join(MUSIC_SUFFIXES)}.")
    if not path.is_file():
        raise DataError(f"{path} is not a file.")
    parser = converter.Converter()
    # keep MIDI timing raw so the only rounding is ours (step 3); music21's own would snap to triplets too
    options = {"quantizePost": False} if fmt == "midi" else {}
    try:
        parser.parseFile(path, format=fmt, forceSource=True, storePickle=False, **options)
        parsed = parser.stream
    except Exception as exc:  # music21's parsers raise anything from MidiException to IndexError on bad bytes
        detail = " ".join(str(exc).split())[:120]
        raise DataError(f"cannot read {path} as {fmt}: {type(exc).__name__}: {detail}") from None
    return list(parsed.scores) if isinstance(parsed, stream.Opus) else [parsed]


def midi_to_events(path: str | Path) -> str:
    """Parse a MIDI file (or .mxl, .musicxml, .xml, .krn, .abc) with music21 and encode it."""
    path = Path(path)
    pieces = _read_pieces(path)
    if len(pieces) != 1:
        raise DataError(f"{path} holds {len(pieces)} pieces; load_music reads each as its own document.")
    return encode_score(pieces[0])


def describe_events(text: str) -> dict[str, Any]:
    """Summary for printing: notes per voice, length in quarter notes, pitch range, malformed words skipped."""
    notes, skipped = _parse_events(text, strict=False)
    notes = _monophonic(notes)
    pitches = [n.pitch for n in notes]
    end = max((n.onset + n.duration for n in notes), default=0)
    return {
        "words": len(text.split()),
        "notes": len(notes),
        "notes_per_voice": {v: sum(n.voice == i for n in notes) for i, v in enumerate(VOICES)},
        "length_quarters": end / STEPS_PER_QUARTER,
        "lowest_pitch": min(pitches, default=None),
        "highest_pitch": max(pitches, default=None),
        "skipped_words": skipped,
    }


# --- datasets -------------------------------------------------------------------------------------
def load_music(name_or_path: str | Path, *, limit: int | None = None) -> TextData:
    """``"chorales"`` (Bach's four-part chorales from music21's corpus) or the user's music file or folder,
    as event-word documents; ``limit`` keeps the first N documents."""
    if limit is not None and (not isinstance(limit, int) or limit < 1):
        raise DataError(f"limit={limit!r} must be a positive whole number of pieces (or None for all).")
    key = str(name_or_path)
    if key == "chorales":
        return _load_chorales(limit)
    path = Path(key).expanduser()
    if not path.exists():
        raise unknown("dataset", key, ["chorales"], hint="Or give a MIDI file or a folder of MIDI files.")
    return _load_files(path, limit)


def _load_files(path: Path, limit: int | None) -> TextData:
    from genlab.data.text import TextData

    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.suffix.lower() in MUSIC_SUFFIXES and p.is_file())
        if not files:
            raise DataError(f"{path} holds no music files; give files ending in {', '.join(MUSIC_SUFFIXES)}.")
    else:
        files = [path]
    names: list[str] = []
    documents: list[str] = []
    for file in files:
        base = str(file.relative_to(path)) if path.is_dir() else file.name
        pieces = _read_pieces(file)
        for k, piece in enumerate(pieces, start=1):
            text = encode_score(piece)
            if not text:  # not skipped silently: the user asked for this file
                raise DataError(f"{file} holds no pitched notes; remove it or give a file with notes.")
            names.append(base if len(pieces) == 1 else f"{base}#{k}")
            documents.append(text)
        if limit is not None and len(documents) >= limit:
            break
    name = path.name if path.is_dir() else path.stem
    return TextData(
        name=name, documents=tuple(documents[:limit]), kind="music", source=str(path.resolve()),
        licence="user", item_names=tuple(names[:limit]),
    )  # fmt: skip


def _music21_version() -> str:
    try:  # read without importing music21 (~0.3 s), so a cached load never imports it
        return importlib.metadata.version("music21")
    except importlib.metadata.PackageNotFoundError:
        raise DataError("music datasets need music21: pip install music21.") from None


def _chorale_cache(limit: int | None) -> Path:
    from genlab.data.datasets import cache_dir

    return cache_dir() / f"chorales-music21-{_music21_version()}-v{ENCODING_VERSION}-{limit or 'all'}.json"


def _read_chorale_cache(path: Path) -> tuple[list[str], list[str]] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        names, documents = data["item_names"], data["documents"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    valid = isinstance(names, list) and isinstance(documents, list) and len(names) == len(documents)
    if not valid or not all(isinstance(s, str) for s in [*names, *documents]):
        return None
    return names, documents


def _parse_chorales(limit: int | None) -> tuple[list[str], list[str]]:
    from music21 import corpus

    names: list[str] = []
    documents: list[str] = []
    for filename in corpus.chorales.Iterator(returnType="filename"):  # 'bach/bwv26.6', Riemenschneider order
        try:
            text = encode_score(corpus.parse(filename))
        except Exception as exc:  # one odd file in a third-party corpus should not sink the other 370
            logger.debug("skipping chorale %s: %s: %s", filename, type(exc).__name__, exc)
            continue
        if text:
            names.append(filename.rsplit("/", 1)[-1])
            documents.append(text)
        if limit is not None and len(documents) >= limit:
            break
    return names, documents


def _load_chorales(limit: int | None) -> TextData:
    from genlab.data.text import TextData

    # parsing all 371 chorales takes 1 to 2 minutes; the encoded text is cached, keyed by music21's version
    # and ENCODING_VERSION. The full cache also serves any limit (its first N are the same chorales).
    cached = _read_chorale_cache(_chorale_cache(None))
    if cached is None and limit is not None:
        cached = _read_chorale_cache(_chorale_cache(limit))
    if cached is None:
        logger.info("parsing Bach's chorales from music21's corpus (1 to 2 minutes, once)")
        cached = _parse_chorales(limit)
        try:  # a read-only cache folder only costs the speed-up
            write_json(_chorale_cache(limit), {"item_names": cached[0], "documents": cached[1]})
        except OSError as exc:
            logger.debug("could not cache the chorales: %s", exc)
    names, documents = cached[0][:limit], cached[1][:limit]
    # Riemenschneider's numbering lists some settings more than once (22 exact copies): keep the first of each,
    # so that no piece sits in both the training and the validation split
    first: dict[str, str] = {}
    for name, doc in zip(names, documents, strict=True):
        first.setdefault(doc, name)
    documents, names = list(first), list(first.values())
    if limit is None and len(documents) <= 300:
        raise DataError(
            f"only {len(documents)} of music21's 371 chorales could be read; reinstall music21 "
            "(pip install --force-reinstall music21) to restore its corpus."
        )
    return TextData(
        name="chorales",
        documents=tuple(documents),
        kind="music",
        source=f"music21 {_music21_version()} corpus (Bach chorales)",
        licence="music21 corpus: BSD-3 code, corpus distributed with permission",
        item_names=tuple(names),
    )


# --- the tokenizer --------------------------------------------------------------------------------
@register_tokenizer
class MusicTokenizer(Tokenizer):
    """Event words ↔ ids over the fixed vocabulary :data:`VOCAB` (434 words: <pad>, <eos>, 16 waits,
    4 × 88 voice:pitch notes, 64 durations). Nothing is learned; the JSON form is only the version."""

    kind: ClassVar[str] = "music"
    separator: ClassVar[str] = " "  # unused: documents end with <eos>

    @property
    def vocab_size(self) -> int:
        return len(VOCAB)

    @property
    def pad_id(self) -> int:
        return _WORD_ID["<pad>"]

    @property
    def eos_id(self) -> int:
        return _WORD_ID["<eos>"]

    def encode(self, text: str) -> list[int]:
        ids = []
        for position, word in enumerate(text.split(), start=1):
            if word not in _WORD_ID or word.startswith("<"):
                raise _unknown_word(word, position)
            ids.append(_WORD_ID[word])
        return ids

    def decode(self, ids: Iterable[int]) -> str:
        special = (self.pad_id, self.eos_id)
        return " ".join(VOCAB[i] for i in check_ids(ids, self.vocab_size) if i not in special)

    def to_dict(self) -> dict[str, Any]:
        return {"encoding_version": ENCODING_VERSION}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MusicTokenizer:
        version = data.get("encoding_version")
        if version != ENCODING_VERSION:
            raise CheckpointError(
                f"this run's music tokenizer uses encoding version {version!r}, but this genlab reads version "
                f"{ENCODING_VERSION}; use the genlab release that trained it, or train again."
            )
        return cls()

    def __repr__(self) -> str:
        return f"MusicTokenizer(encoding_version={ENCODING_VERSION}, vocab_size={self.vocab_size})"
