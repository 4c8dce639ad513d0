"""A gallery of enrolled people: their sequences' embeddings in one SQLite file, and identification against it.

Schema (version 1; ``PRAGMA application_id`` marks the file as a gaitrec gallery, ``PRAGMA user_version``
holds the schema version):

- ``meta(key, value)``: ``model_identity`` and ``model_config`` (JSON) of the model every embedding came
  from, ``embedding_shape`` ``[C, P]``, ``frame_size`` ``[H, W]``, ``created``, ``checkpoint`` (for
  messages only), and ``nearest_pair`` (JSON ``{"distance", "names"}``, the calibration of the default
  threshold, kept up to date by every write). The first enrolment sets them; a gallery never mixes models.
- ``people(id, name, created)``.
- ``sequences(id, person_id, source, track, frames, channels, parts, embedding, created)``: one row per
  enrolled sequence; ``embedding`` is float32 little-endian ``[channels, parts]``. Enrolling a name again
  adds sequences; every one is kept.

Safety: an enrolment is one transaction (a new gallery is built in a temporary file and linked into place
when complete), so an interrupted enrolment leaves the file exactly as it was; WAL mode lets readers work
while one writer writes, and a second writer waits up to ``timeout`` seconds. Nothing stored is executed:
a file with triggers or views is refused, and embeddings are read with ``numpy.frombuffer`` and checked.

Identification: a person's distance to a query is the smallest over their sequences, with the metric of
the model's evaluator (``euc``: Euclidean per part, averaged over parts, as in evaluation). The default
threshold is the distance between the two closest different enrolled people: a query is accepted as X
only when it lies closer to X than any two enrolled people lie to each other.
"""
from __future__ import annotations

import io
import json
import os
import re
import sqlite3
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .errors import DataError
from .files import atomic_write_bytes
from .evaluation.distance import distance_blocks

SCHEMA_VERSION = 1
APPLICATION_ID = 0x47616974  # "Gait"
DEFAULT_TIMEOUT_S = 30.0
UNKNOWN = "unknown"  # the decision for a query no enrolled person is close enough to
EXPORT_FORMATS = (".npz", ".json")

_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE people (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, created TEXT NOT NULL);
CREATE TABLE sequences (
    id INTEGER PRIMARY KEY,
    person_id INTEGER NOT NULL REFERENCES people(id),
    source TEXT NOT NULL,
    track INTEGER,
    frames INTEGER NOT NULL,
    channels INTEGER NOT NULL,
    parts INTEGER NOT NULL,
    embedding BLOB NOT NULL,
    created TEXT NOT NULL
);
CREATE INDEX sequences_person ON sequences(person_id);
"""
_COLUMNS = {
    "meta": ["key", "value"],
    "people": ["id", "name", "created"],
    "sequences": ["id", "person_id", "source", "track", "frames", "channels", "parts", "embedding", "created"],
}
_REQUIRED_META = ("model_identity", "model_config", "embedding_shape", "frame_size", "created")


class GalleryBusyError(OSError):
    """Another process held the gallery's write lock for longer than the timeout."""


@dataclass
class EnrolledSequence:
    """One sequence to enrol: where it came from and its embedding ``[C, P]``."""
    source: str
    track: int | None
    frames: int
    embedding: np.ndarray


@dataclass
class ModelRecord:
    """What a gallery records of its model: the identity, the config it covers, and the input it takes."""
    identity: str
    config: dict
    embedding_shape: tuple[int, int]
    frame_size: tuple[int, int]
    checkpoint: str | None = None  # where the first enrolment's weights came from, to tell the user

    def require(self, identity: str, where: str | Path) -> None:
        """Refuse another model than this one: its embeddings mean something else."""
        if identity != self.identity:
            origin = f" (checkpoint {self.checkpoint})" if self.checkpoint else ""
            raise DataError(f"{where} was enrolled with model {self.identity}{origin}, not {identity}; use the "
                             "config and checkpoint it was built with, or another gallery")


@dataclass
class Person:
    name: str
    sequences: int
    sources: list[str] = field(default_factory=list)


@dataclass
class Match:
    name: str
    distance: float


@dataclass
class Identification:
    matches: list[Match]  # nearest first
    decision: str  # the nearest name, or UNKNOWN when it lies beyond the threshold


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def check_name(name: str) -> str:
    """A person's name: printable, not empty, not the word reserved for rejected queries."""
    if not isinstance(name, str) or not name.strip():
        raise DataError("a person's name must not be empty")
    if name != name.strip() or re.search(r"[\x00-\x1f\x7f]", name) or len(name) > 200:
        raise DataError(f"name {name!r}: no leading or trailing spaces, control characters, or more than "
                         "200 characters")
    if name.lower() == UNKNOWN:
        raise DataError(f"name {name!r} is reserved: identification answers {UNKNOWN!r} for a stranger")
    return name


class Gallery:
    """An open gallery file. Use ``Gallery.open(path)`` (existing files) or ``enroll`` (creates one)."""

    def __init__(self, path: Path, connection: sqlite3.Connection, timeout: float):
        self.path = path
        self.db = connection
        self.timeout = timeout
        self.model = self._read_model()

    # -- opening and checking -------------------------------------------------------------------------

    @classmethod
    def open(cls, path: str | Path, timeout: float = DEFAULT_TIMEOUT_S) -> "Gallery":
        """Open an existing gallery; ValueError naming the file when it is not one (another file type,
        another SQLite database, a newer schema, a damaged table)."""
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"gallery not found: {path}")
        if not path.is_file():
            raise DataError(f"{path}: not a gaitrec gallery (not a file)")
        if path.stat().st_size == 0:
            raise DataError(f"{path}: not a gaitrec gallery (empty file)")
        db = _connect(path, timeout)
        try:
            _check_schema(db, path)
            return cls(path, db, timeout)
        except sqlite3.DatabaseError as err:
            db.close()
            raise DataError(f"{path}: not a gaitrec gallery, or a damaged one ({err})") from None
        except BaseException:
            db.close()
            raise

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> "Gallery":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _meta(self) -> dict[str, str]:
        return dict(self.db.execute("SELECT key, value FROM meta").fetchall())

    def _read_model(self) -> ModelRecord:
        meta = self._meta()
        missing = [k for k in _REQUIRED_META if k not in meta]
        if missing:
            raise DataError(f"{self.path}: not a complete gaitrec gallery (meta lacks {', '.join(missing)})")
        try:
            config = json.loads(meta["model_config"])
            shape = tuple(int(x) for x in json.loads(meta["embedding_shape"]))
            frame_size = tuple(int(x) for x in json.loads(meta["frame_size"]))
        except (ValueError, TypeError) as err:
            raise DataError(f"{self.path}: damaged gallery metadata ({err})") from None
        if not isinstance(config, dict) or len(shape) != 2 or len(frame_size) != 2 or min(shape + frame_size) < 1:
            raise DataError(f"{self.path}: damaged gallery metadata (model config, embedding shape or frame size)")
        return ModelRecord(meta["model_identity"], config, shape, frame_size, meta.get("checkpoint"))

    def check_model(self, identity: str) -> None:
        """Refuse a model other than the one the gallery was built with."""
        self.model.require(identity, self.path)

    @property
    def metric(self) -> str:
        return self.model.config.get("metric", "euc")

    # -- reading --------------------------------------------------------------------------------------

    def people(self) -> list[Person]:
        """Enrolled people by name, with their sequence counts and distinct sources."""
        rows = self.db.execute(
            "SELECT p.name, s.source FROM people p JOIN sequences s ON s.person_id = p.id ORDER BY p.name, s.id")
        out: dict[str, Person] = {}
        for name, source in rows:
            person = out.setdefault(name, Person(name, 0))
            person.sequences += 1
            if source not in person.sources:
                person.sources.append(source)
        return list(out.values())

    def sequences(self) -> list[dict]:
        """Every enrolled sequence with its checked embedding, in enrolment order."""
        c, p = self.model.embedding_shape
        rows = self.db.execute(
            "SELECT p.name, s.source, s.track, s.frames, s.channels, s.parts, s.embedding, s.created, s.id "
            "FROM sequences s JOIN people p ON p.id = s.person_id ORDER BY s.id").fetchall()
        out = []
        for name, source, track, frames, channels, parts, blob, created, row in rows:
            if (channels, parts) != (c, p) or not isinstance(blob, bytes) or len(blob) != c * p * 4:
                raise DataError(f"{self.path}: sequence {row} holds an embedding of the wrong size "
                                 f"(expected float32 [{c}, {p}])")
            embedding = np.frombuffer(blob, dtype="<f4").reshape(c, p).astype(np.float32)
            if not np.isfinite(embedding).all():
                raise DataError(f"{self.path}: sequence {row} holds a non-finite embedding")
            out.append({"name": name, "source": source, "track": track, "frames": frames, "created": created,
                        "embedding": embedding})
        return out

    def embeddings(self) -> tuple[list[str], np.ndarray]:
        """The owner's name of every sequence and the embeddings ``[N, C, P]``."""
        rows = self.sequences()
        if not rows:
            return [], np.zeros((0, *self.model.embedding_shape), np.float32)
        return [r["name"] for r in rows], np.stack([r["embedding"] for r in rows])

    def nearest_pair(self) -> tuple[float, list[str]] | None:
        """The two closest different enrolled people and their distance; None with fewer than two people."""
        value = self._meta().get("nearest_pair")
        if not value:
            return None
        data = json.loads(value)
        return float(data["distance"]), list(data["names"])

    @contextmanager
    def snapshot(self):
        """Reads inside see one committed state of the gallery, whatever a writer commits meanwhile."""
        if self.db.in_transaction:  # already inside one (e.g. a write): that is the snapshot
            yield self
            return
        self.db.execute("BEGIN")
        try:
            yield self
        finally:
            self.db.execute("COMMIT")

    # -- writing --------------------------------------------------------------------------------------

    def _write(self):
        """A write transaction: waits up to ``timeout`` for another writer, then fails with one line."""
        return _WriteTransaction(self)

    def add(self, name: str, sequences: list[EnrolledSequence]) -> int:
        """Enrol ``sequences`` under ``name`` in one transaction; returns the person's sequence count."""
        check_name(name)
        self._check_embeddings(sequences)
        with self._write():
            created = _now()
            row = self.db.execute("SELECT id FROM people WHERE name = ?", (name,)).fetchone()
            person = row[0] if row else self.db.execute("INSERT INTO people (name, created) VALUES (?, ?)",
                                                        (name, created)).lastrowid
            for seq in sequences:
                self._insert_sequence(person, seq, created)
            self._update_nearest_pair(name, np.stack([s.embedding for s in sequences]))
            return self.db.execute("SELECT COUNT(*) FROM sequences WHERE person_id = ?", (person,)).fetchone()[0]

    def _insert_sequence(self, person: int, seq: EnrolledSequence, created: str) -> None:
        c, p = seq.embedding.shape
        blob = np.ascontiguousarray(seq.embedding, dtype="<f4").tobytes()
        self.db.execute("INSERT INTO sequences (person_id, source, track, frames, channels, parts, embedding, created) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?, ?)", (person, seq.source, seq.track, int(seq.frames), c, p,
                                                             blob, created))

    def _check_embeddings(self, sequences: list[EnrolledSequence]) -> None:
        if not sequences:
            raise DataError("nothing to enrol: no sequence given")
        for seq in sequences:
            e = seq.embedding
            if not isinstance(e, np.ndarray) or e.dtype != np.float32 or tuple(e.shape) != self.model.embedding_shape:
                raise DataError(f"{seq.source}: embedding must be float32 {list(self.model.embedding_shape)}, got "
                                 f"{getattr(e, 'dtype', type(e).__name__)} {list(getattr(e, 'shape', []))}")
            if not np.isfinite(e).all():
                raise DataError(f"{seq.source}: non-finite embedding")

    def remove(self, name: str) -> int:
        """Remove a person and all their sequences; returns how many sequences went."""
        with self._write():
            row = self.db.execute("SELECT id FROM people WHERE name = ?", (name,)).fetchone()
            if row is None:
                known = [r[0] for r in self.db.execute("SELECT name FROM people ORDER BY name LIMIT 10")]
                raise DataError(f"{self.path}: no person named {name!r}"
                                 + (f" (enrolled: {', '.join(known)})" if known else " (the gallery is empty)"))
            count = self.db.execute("DELETE FROM sequences WHERE person_id = ?", (row[0],)).rowcount
            self.db.execute("DELETE FROM people WHERE id = ?", (row[0],))
            pair = self.nearest_pair()
            if pair is not None and name in pair[1]:
                self._recompute_nearest_pair()
            return count

    def _set_meta(self, key: str, value: str | None) -> None:
        if value is None:
            self.db.execute("DELETE FROM meta WHERE key = ?", (key,))
        else:
            self.db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    def _update_nearest_pair(self, name: str, new: np.ndarray) -> None:
        """After ``new`` sequences of ``name`` joined: only pairs with ``name`` can have come closer."""
        names, embeddings = self.embeddings()
        others = np.array([n != name for n in names])
        best = self.nearest_pair()
        if others.any():
            other_names = [n for n, o in zip(names, others) if o]
            distance, index = _nearest_row(new, embeddings[others], self.metric)
            if best is None or distance < best[0]:
                best = (distance, sorted([name, other_names[index]]))
        self._set_meta("nearest_pair", None if best is None else json.dumps({"distance": best[0], "names": best[1]}))

    def _recompute_nearest_pair(self) -> None:
        names, embeddings = self.embeddings()
        best = None
        for person in sorted(set(names)):
            mine = np.array([n == person for n in names])
            if mine.all():
                break
            distance, index = _nearest_row(embeddings[mine], embeddings[~mine], self.metric)
            if best is None or distance < best[0]:
                best = (distance, sorted([person, [n for n in names if n != person][index]]))
        self._set_meta("nearest_pair", None if best is None else json.dumps({"distance": best[0], "names": best[1]}))

    # -- export ---------------------------------------------------------------------------------------

    def export(self, out: str | Path, overwrite: bool = False) -> int:
        """Write every sequence's name, source, track, frames and embedding to ``out``: ``.npz`` (arrays
        ``names``, ``sources`` (strings), ``tracks`` (-1: none), ``frames``, ``embeddings`` float32
        ``[N, C, P]``, ``model_identity``, ``model_config`` (JSON string); no pickled objects) or ``.json``
        (``{"model", "model_config", "metric", "sequences": [{"name", "source", "track", "frames",
        "created", "embedding": [[...]]}]}``). Written atomically; an existing file needs ``overwrite``.
        Returns the number of sequences written."""
        out = Path(out)
        if out.suffix.lower() not in EXPORT_FORMATS:
            raise DataError(f"{out}: export format is chosen by the suffix, one of {', '.join(EXPORT_FORMATS)}")
        if out.exists() and not overwrite:
            raise FileExistsError(f"{out} already exists; choose another name or pass --overwrite")
        with self.snapshot():
            rows = self.sequences()
        if out.suffix.lower() == ".npz":
            buffer = io.BytesIO()
            np.savez(buffer, names=np.array([r["name"] for r in rows], dtype=str),
                     sources=np.array([r["source"] for r in rows], dtype=str),
                     tracks=np.array([-1 if r["track"] is None else r["track"] for r in rows], dtype=np.int64),
                     frames=np.array([r["frames"] for r in rows], dtype=np.int64),
                     embeddings=np.stack([r["embedding"] for r in rows]) if rows else
                     np.zeros((0, *self.model.embedding_shape), np.float32), model_identity=np.array(self.model.identity),
                     model_config=np.array(json.dumps(self.model.config, sort_keys=True)))
            data = buffer.getvalue()
        else:
            data = json.dumps({
                "model": self.model.identity, "model_config": self.model.config, "metric": self.metric,
                "sequences": [{**{k: r[k] for k in ("name", "source", "track", "frames", "created")},
                               "embedding": r["embedding"].tolist()} for r in rows],
            }).encode()
        atomic_write_bytes(out, data)
        return len(rows)


class _WriteTransaction:
    """``BEGIN IMMEDIATE`` ... ``COMMIT``, rolled back on any exception (SQLite rolls back a killed one)."""

    def __init__(self, gallery: Gallery):
        self.gallery = gallery

    def __enter__(self):
        try:
            self.gallery.db.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as err:
            if "locked" in str(err) or "busy" in str(err):
                raise GalleryBusyError(f"{self.gallery.path}: another process is writing the gallery; gave up "
                                       f"after {self.gallery.timeout:g} s, try again") from None
            raise
        return self

    def __exit__(self, kind, value, traceback):
        if kind is None:
            self.gallery.db.execute("COMMIT")
        else:
            self.gallery.db.execute("ROLLBACK")
        return False


def _connect(path: Path, timeout: float) -> sqlite3.Connection:
    """A connection to an existing file (``mode=rw`` never creates one) in autocommit mode: transactions are
    explicit. Schema code is not trusted: functions with side effects cannot run from views or triggers.
    ``timeout`` is SQLite's busy timeout: how long a writer waits for another one to finish."""
    db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=rw", uri=True, timeout=timeout, isolation_level=None)
    try:
        db.execute("PRAGMA trusted_schema = OFF")
    except sqlite3.DatabaseError:
        db.close()
        raise
    return db


def _check_schema(db: sqlite3.Connection, path: Path) -> None:
    application_id = db.execute("PRAGMA application_id").fetchone()[0]
    version = db.execute("PRAGMA user_version").fetchone()[0]
    if application_id != APPLICATION_ID:
        raise DataError(f"{path}: not a gaitrec gallery (an SQLite database of another application)")
    if version > SCHEMA_VERSION:
        raise DataError(f"{path}: gallery schema version {version} is newer than this gaitrec reads "
                         f"({SCHEMA_VERSION}); upgrade gaitrec")
    if version < 1:
        raise DataError(f"{path}: not a gaitrec gallery (no schema version)")
    objects = db.execute("SELECT type, name FROM sqlite_master").fetchall()
    unexpected = [f"{kind} {name}" for kind, name in objects if kind not in ("table", "index")]
    tables = {name for kind, name in objects if kind == "table"}
    if unexpected or tables != set(_COLUMNS):
        raise DataError(f"{path}: not a gaitrec gallery (unexpected schema: "
                         f"{', '.join(unexpected) or 'tables ' + ', '.join(sorted(tables))})")
    for table, columns in _COLUMNS.items():
        found = [row[1] for row in db.execute(f"PRAGMA table_info({table})")]
        if found != columns:
            raise DataError(f"{path}: not a gaitrec gallery (table {table} has columns {', '.join(found)})")


def _nearest_row(queries: np.ndarray, targets: np.ndarray, metric: str) -> tuple[float, int]:
    """The smallest distance from any query to any target, and that target's index."""
    best, index = float("inf"), -1
    for _, block in distance_blocks(queries, targets, metric, device="cpu"):
        values, columns = block.min(dim=1)
        row = int(values.argmin())
        if float(values[row]) < best:
            best, index = float(values[row]), int(columns[row])
    return best, index


def _new_gallery(path: Path, model: ModelRecord) -> sqlite3.Connection:
    """An empty gallery with ``model`` recorded, at ``path`` (a temporary file); WAL mode is stored in the file."""
    db = sqlite3.connect(str(path), isolation_level=None)
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("PRAGMA synchronous = FULL")
    db.execute("BEGIN IMMEDIATE")  # statement by statement: executescript would commit on its own
    for statement in filter(str.strip, _SCHEMA.split(";")):
        db.execute(statement)
    meta = {"model_identity": model.identity, "model_config": json.dumps(model.config, sort_keys=True),
            "embedding_shape": json.dumps(list(model.embedding_shape)), "frame_size": json.dumps(list(model.frame_size)),
            "created": _now()}
    if model.checkpoint:
        meta["checkpoint"] = str(model.checkpoint)
    db.executemany("INSERT INTO meta (key, value) VALUES (?, ?)", meta.items())
    db.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    db.execute("COMMIT")
    return db


def enroll(path: str | Path, name: str, sequences: list[EnrolledSequence], model: ModelRecord,
           timeout: float = DEFAULT_TIMEOUT_S) -> int:
    """Enrol ``sequences`` of ``name`` into the gallery at ``path`` in one transaction, creating the gallery
    (recording ``model``) if the file does not exist; returns the person's sequence count.

    A new gallery is written completely in a temporary file beside ``path`` and then linked into place, so
    ``path`` never holds a half-made gallery. An existing gallery built with another model is refused.
    """
    path = Path(path)
    check_name(name)
    if not path.exists():
        if not path.parent.is_dir():
            raise FileNotFoundError(f"folder of the gallery not found: {path.parent}")
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.close(fd)
        os.unlink(tmp)  # SQLite creates the file itself
        tmp = Path(tmp)
        try:
            db = _new_gallery(tmp, model)
            with Gallery(tmp, db, timeout) as gallery:
                count = gallery.add(name, sequences)
            if _link_new(tmp, path):
                return count
        finally:
            for leftover in (tmp, Path(f"{tmp}-wal"), Path(f"{tmp}-shm")):
                if leftover.exists():
                    leftover.unlink()
        # Another process created the gallery meanwhile: enrol into theirs.
    with Gallery.open(path, timeout) as gallery:
        gallery.check_model(model.identity)
        if tuple(model.frame_size) != gallery.model.frame_size:
            raise DataError(f"{path}: the gallery holds {gallery.model.frame_size[0]}x{gallery.model.frame_size[1]} "
                             f"sequences, not {model.frame_size[0]}x{model.frame_size[1]}")
        return gallery.add(name, sequences)


def _link_new(tmp: Path, path: Path) -> bool:
    """Put the complete file ``tmp`` at ``path`` unless something is there already; True when it went in."""
    try:
        os.link(tmp, path)
    except FileExistsError:
        return False
    except OSError:  # a file system without hard links
        if path.exists():
            return False
        os.replace(tmp, path)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
    return True


def identify(gallery: Gallery, embeddings: np.ndarray, top_k: int = 5, threshold: float | None = None
             ) -> list[Identification]:
    """For each query embedding ``[Q, C, P]`` the ``top_k`` nearest people (a person's distance is the
    smallest over their sequences) and a decision: the nearest name, or ``UNKNOWN`` when its distance
    exceeds ``threshold``. ``threshold`` None uses ``default_threshold(gallery)`` (no threshold at all when
    fewer than two people are enrolled)."""
    if top_k < 1:
        raise DataError(f"top-k must be at least 1, got {top_k}")
    with gallery.snapshot():
        names, gallery_embeddings = gallery.embeddings()
        if threshold is None:
            threshold = default_threshold(gallery)
    if not names:
        raise DataError(f"{gallery.path}: the gallery is empty; enrol someone first")
    queries = np.asarray(embeddings, dtype=np.float32)
    if queries.ndim != 3 or tuple(queries.shape[1:]) != gallery.model.embedding_shape:
        raise DataError(f"query embeddings must be [Q, {', '.join(map(str, gallery.model.embedding_shape))}], got "
                         f"{list(queries.shape)}")
    people = sorted(set(names))
    column = {name: i for i, name in enumerate(people)}
    owner = torch.tensor([column[n] for n in names])
    k = min(top_k, len(people))
    results = []
    for _, block in distance_blocks(queries, gallery_embeddings, gallery.metric, device="cpu"):
        per_person = torch.full((block.shape[0], len(people)), float("inf"))
        per_person.scatter_reduce_(1, owner.expand(block.shape[0], -1), block, reduce="amin")
        distances, indices = torch.topk(per_person, k, dim=1, largest=False, sorted=True)
        for row_d, row_i in zip(distances.tolist(), indices.tolist()):
            matches = [Match(people[i], d) for d, i in zip(row_d, row_i)]
            accepted = threshold is None or matches[0].distance <= threshold
            results.append(Identification(matches, matches[0].name if accepted else UNKNOWN))
    return results


def default_threshold(gallery: Gallery) -> float | None:
    """The distance between the two closest different enrolled people (None with fewer than two)."""
    pair = gallery.nearest_pair()
    return None if pair is None else pair[0]
