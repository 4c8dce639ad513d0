"""A packed sequence store: every sequence's frames in one memory-mapped file, found through one index.

Reading thousands of small ``.pkl`` files costs a file open and an unpickling per sequence; the store maps
one file once per process and hands out slices of it.

Format (version 2; version 1 lacks the two checksums of the index), a folder with two files:

``frames.u8``
    Raw uint8 pixels of all sequences, back to back, C order, no header. Sequence ``i`` occupies bytes
    ``[offset_i, offset_i + length_i * height_i * width_i)`` and is the array ``[length_i, height_i, width_i]``.

``store.json``
    UTF-8 JSON object::

        {"format": "gaitrec-store", "version": 1,
         "frames_file": "frames.u8", "frames_bytes": <size of frames.u8>, "total_frames": <sum of lengths>,
         "crc32": <zlib.crc32 of frames.u8>, "columns": ["subject", "type", "view", "file",
                                                         "offset", "length", "height", "width"],
         "sequences": [["001", "nm-01", "000", "000.pkl", 0, 80, 64, 64], ...],
         "sequence_crc32": [<zlib.crc32 of each sequence's bytes>, ...],
         "index_crc32": <zlib.crc32 of this JSON, compact, without this last key>}

    ``file`` is the ``.pkl`` name the sequence came from, so that ``unpack`` restores the layout exactly.
    Sequences are sorted by (subject, type, view) and stored contiguously in that order.

Opening a store checks the magic, the version, every index row, that the sequences tile ``frames.u8``
without gaps or overlaps and that the file has exactly ``frames_bytes`` bytes, so a truncated copy or a
stale index fails at once with a message naming the problem, and the index's own checksum catches a flipped
bit in it. Each sequence's bytes are checked against its CRC the first time a process reads it;
``verify_store`` checks every sequence and the whole file. ``pack`` and ``unpack`` write into a temporary folder beside the target and rename
it into place, so a target that exists is complete.
"""
from __future__ import annotations

import json
import mmap
import os
import shutil
import tempfile
import zlib
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..errors import DataError
from ..locking import OutputLock
from .layout import PklSource, SequenceInfo
from ..files import current_umask, fsync_directory
from .pickle_io import save_array

MAGIC = "gaitrec-store"
VERSION = 2
READABLE_VERSIONS = (1, 2)
INDEX_FILE = "store.json"
FRAMES_FILE = "frames.u8"
COLUMNS = ["subject", "type", "view", "file", "offset", "length", "height", "width"]


class StoreError(DataError):
    """A packed store is missing, truncated or inconsistent."""


def is_store(root: str | Path) -> bool:
    """Whether ``root`` is a packed store (it holds ``store.json``); its contents are checked on opening."""
    return (Path(root) / INDEX_FILE).is_file()


def _read_index(root: Path) -> dict:
    path = root / INDEX_FILE
    if not path.is_file():
        raise StoreError(f"{root}: not a packed store ({INDEX_FILE} missing)")
    try:
        index = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise StoreError(f"{path}: corrupt index, not valid JSON ({err})") from None
    if not isinstance(index, dict) or index.get("format") != MAGIC:
        raise StoreError(f"{path}: not a gaitrec store index (format is not {MAGIC!r})")
    if index.get("version") not in READABLE_VERSIONS:
        raise StoreError(f"{path}: store version {index.get('version')!r}, this gaitrec reads versions "
                         f"{', '.join(map(str, READABLE_VERSIONS))}")
    if index["version"] >= 2:
        stored = index.pop("index_crc32", None)
        if stored != index_checksum(index):
            raise StoreError(f"{path}: corrupt index, its checksum does not match its content")
        if not isinstance(index.get("sequence_crc32"), list) or \
                len(index["sequence_crc32"]) != len(index.get("sequences") or []):
            raise StoreError(f"{path}: corrupt index, 'sequence_crc32' does not list one CRC per sequence")
    for key, kind in (("frames_file", str), ("frames_bytes", int), ("total_frames", int), ("crc32", int),
                      ("columns", list), ("sequences", list)):
        if not isinstance(index.get(key), kind):
            raise StoreError(f"{path}: corrupt index, {key!r} missing or not {kind.__name__}")
    if index["columns"] != COLUMNS:
        raise StoreError(f"{path}: corrupt index, columns {index['columns']} are not {COLUMNS}")
    return index


def index_checksum(index: dict) -> int:
    """CRC32 of the index as ``pack`` writes it (compact JSON, keys in order), without ``index_crc32``."""
    body = {k: v for k, v in index.items() if k != "index_crc32"}
    return zlib.crc32(json.dumps(body, separators=(",", ":")).encode("utf-8"))


def _check_rows(root: Path, index: dict) -> None:
    """The rows must be well formed and tile ``frames_bytes`` exactly, in order."""
    where = root / INDEX_FILE
    expected_offset, frames = 0, 0
    for i, row in enumerate(index["sequences"]):
        if (not isinstance(row, list) or len(row) != len(COLUMNS)
                or not all(isinstance(x, str) for x in row[:4])
                or not all(isinstance(x, int) and x >= 0 for x in row[4:])):
            raise StoreError(f"{where}: corrupt index, sequence row {i} is {row!r}")
        offset, length, height, width = row[4:]
        if offset != expected_offset:
            raise StoreError(f"{where}: corrupt index, sequence {'/'.join(row[:3])} starts at byte {offset}, "
                             f"expected {expected_offset}")
        expected_offset += length * height * width
        frames += length
    if expected_offset != index["frames_bytes"] or frames != index["total_frames"]:
        raise StoreError(f"{where}: corrupt index, its sequences cover {expected_offset} bytes and {frames} frames "
                         f"but the header says {index['frames_bytes']} bytes and {index['total_frames']} frames")
    data = root / index["frames_file"]
    if not data.is_file():
        raise StoreError(f"{root}: frame file {index['frames_file']} missing")
    size = data.stat().st_size
    if size != index["frames_bytes"]:
        state = "truncated" if size < index["frames_bytes"] else "longer than its index"
        raise StoreError(f"{data}: {state}, {size} bytes but the index expects {index['frames_bytes']}")


class StoreSource:
    """The sequences of a packed store (the ``SequenceSource`` protocol).

    ``load(i)`` returns a read-only view into the memory map, not a copy: select frames or call ``.copy()``
    before modifying. The map is opened lazily in each process, so the source can be handed to DataLoader
    worker processes (forked or spawned).
    """

    def __init__(self, root: str | Path):
        self.root = Path(root)
        index = _read_index(self.root)
        _check_rows(self.root, index)
        self.frames_path = self.root / index["frames_file"]
        self.frames_bytes = index["frames_bytes"]
        self.total_frames = index["total_frames"]
        self.crc32 = index["crc32"]
        self.sequence_crc32: list[int] | None = index.get("sequence_crc32")  # None: a version 1 store
        self._verified: set[int] = set()
        rows = index["sequences"]
        self.files = [r[3] for r in rows]
        self._layout = [tuple(r[4:]) for r in rows]  # (offset, T, H, W); tuples: load() is on the hot path
        self.sequences = [SequenceInfo(r[0], r[1], r[2], f"{self.root}[{r[0]}/{r[1]}/{r[2]}]") for r in rows]
        self._flat: np.ndarray | None = None
        self._mapped: mmap.mmap | None = None
        self._pid: int | None = None

    def __len__(self) -> int:
        return len(self.sequences)

    def _frames(self) -> np.ndarray:
        if self._flat is None or self._pid != os.getpid():
            if self.frames_bytes == 0:
                self._flat = np.zeros(0, dtype=np.uint8)
            else:
                with open(self.frames_path, "rb") as f:
                    mapped = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
                if len(mapped) != self.frames_bytes:
                    raise StoreError(f"{self.frames_path}: changed since the store was opened "
                                     f"({len(mapped)} bytes, expected {self.frames_bytes})")
                self._flat = np.frombuffer(mapped, dtype=np.uint8)
                self._mapped = mapped
            self._pid = os.getpid()
        return self._flat

    def load(self, index: int) -> np.ndarray:
        """Frames of sequence ``index``: a read-only uint8 view ``[T, H, W]``, its CRC checked on first read."""
        offset, length, height, width = self._layout[index]
        flat = self._frames()
        size = length * height * width
        if size:
            # One readahead request for the whole sequence: a cold page fault would read it in small windows.
            start = offset - offset % mmap.PAGESIZE
            self._mapped.madvise(mmap.MADV_WILLNEED, start, offset + size - start)
        frames = flat[offset: offset + size]
        if index not in self._verified:
            self.check_sequence_crc(index, frames)
        return frames.reshape(length, height, width)

    def check_sequence_crc(self, index: int, frames: np.ndarray | None = None) -> None:
        """Compare sequence ``index``'s bytes with its CRC in the index (once per process); raises StoreError."""
        if self.sequence_crc32 is not None:
            if frames is None:
                offset, length, height, width = self._layout[index]
                frames = self._frames()[offset: offset + length * height * width]
            crc = zlib.crc32(frames)
            if crc != self.sequence_crc32[index]:
                raise StoreError(f"{self.sequences[index].location}: frames corrupt (CRC {crc:#010x}, index says "
                                 f"{self.sequence_crc32[index]:#010x}); run gaitrec data verify {self.root}")
        self._verified.add(index)

    def header(self, index: int) -> tuple[tuple[int, ...], np.dtype]:
        """Shape and dtype of sequence ``index`` from the (checked) index."""
        return tuple(self._layout[index][1:]), np.dtype(np.uint8)

    def frame_count(self, index: int) -> int:
        """Number of frames of sequence ``index``, without reading them."""
        return self._layout[index][1]

    def frame_shape(self, index: int) -> tuple[int, int]:
        return self._layout[index][2:]

    def __getstate__(self):
        # The map belongs to one process; a worker process maps the file again.
        state = self.__dict__.copy()
        state["_flat"], state["_mapped"], state["_pid"] = None, None, None
        state["_verified"] = set()
        return state


def verify_store(root: str | Path, progress: bool = False) -> list[str]:
    """Check every sequence's CRC and the whole ``frames.u8`` against the index.

    Returns the messages of the corrupt sequences (empty when all are intact); raises StoreError when the
    store cannot be opened or only the whole-file CRC disagrees.
    """
    source = StoreSource(root)
    bad = []
    for i in tqdm(range(len(source)), desc="verify", unit="seq", disable=not progress):
        try:
            source.check_sequence_crc(i)
        except StoreError as err:
            bad.append(str(err))
    if bad:
        return bad
    crc = 0
    with open(source.frames_path, "rb") as f:
        while chunk := f.read(1 << 24):
            crc = zlib.crc32(chunk, crc)
    if crc != source.crc32:
        raise StoreError(f"{source.frames_path}: contents corrupt (CRC {crc:#010x}, index says {source.crc32:#010x})")
    return []


# ------------------------------------------------------------------------------------------ writing
def _check_target(target: Path) -> None:
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise FileExistsError(f"{target} already exists: remove it or choose another output path")


def _build_then_rename(target: Path, build) -> None:
    """Run ``build(folder)`` in a temporary folder beside ``target``, then rename it to ``target``; under a lock
    (``.<target>.lock`` beside it), which also makes the temporary folders of killed runs safe to remove."""
    _check_target(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    lock = OutputLock(target.parent / f".{target.name}.lock", str(target), remove=True)
    try:
        for stale in target.parent.glob(f".{target.name}.*.tmp"):
            shutil.rmtree(stale, ignore_errors=True)
        _build_in_temporary(target, build)
    finally:
        lock.release()


def _build_in_temporary(target: Path, build) -> None:
    temp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp"))
    os.chmod(temp, 0o777 & ~current_umask())  # mkdtemp creates 0700; outputs follow the umask
    try:
        build(temp)
        _check_target(target)
        if target.exists():
            target.rmdir()  # empty, checked above
        os.replace(temp, target)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise
    fsync_directory(target.parent)


def pack(pkl_root: str | Path, store_root: str | Path, progress: bool = True) -> dict:
    """Pack an OpenGait ``.pkl`` dataset (one uint8 [T, H, W] file per sequence folder) into a new store.

    Refuses to overwrite an existing ``store_root``. Returns ``{"sequences": n, "frames": n, "bytes": n}``.
    """
    pkl_root, store_root = Path(pkl_root), Path(store_root)
    _check_target(store_root)
    source = PklSource(pkl_root)
    if source.empty_folders:
        raise DataError(f"{source.empty_folders[0]}: sequence folder holds no .pkl file "
                         f"({len(source.empty_folders)} such folders); remove them before packing")
    for info in source.sequences:
        folder = Path(info.location).parent
        count = len(list(folder.glob("*.pkl")))
        if count != 1:
            raise DataError(f"{folder}: holds {count} .pkl files; a store keeps one silhouette array per sequence")

    def build(folder: Path) -> None:
        rows, crcs, offset, frames, crc = [], [], 0, 0, 0
        with open(folder / FRAMES_FILE, "wb") as out:
            for i, info in enumerate(tqdm(source.sequences, desc="pack", unit="seq", disable=not progress)):
                array = source.load(i)
                if array.dtype != np.uint8 or array.ndim != 3:
                    raise DataError(f"{info.location}: a store holds uint8 [T, H, W] silhouettes, found "
                                     f"{array.dtype} of shape {tuple(array.shape)}")
                data = np.ascontiguousarray(array).tobytes()
                out.write(data)
                crc = zlib.crc32(data, crc)
                crcs.append(zlib.crc32(data))
                length, height, width = array.shape
                rows.append([info.subject, info.type, info.view, Path(info.location).name,
                             offset, length, height, width])
                offset += len(data)
                frames += length
            out.flush()
            os.fsync(out.fileno())
        index = {"format": MAGIC, "version": VERSION, "frames_file": FRAMES_FILE, "frames_bytes": offset,
                 "total_frames": frames, "crc32": crc, "columns": COLUMNS, "sequences": rows,
                 "sequence_crc32": crcs}
        index["index_crc32"] = index_checksum(index)
        with open(folder / INDEX_FILE, "w", encoding="utf-8") as f:
            json.dump(index, f, separators=(",", ":"))
            f.flush()
            os.fsync(f.fileno())
        stats.update(sequences=len(rows), frames=frames, bytes=offset)

    stats: dict = {}
    _build_then_rename(store_root, build)
    return stats


def unpack(store_root: str | Path, pkl_root: str | Path, progress: bool = True) -> dict:
    """Write a store back to OpenGait's ``.pkl`` layout (the inverse of ``pack``); refuses to overwrite."""
    store_root, pkl_root = Path(store_root), Path(pkl_root)
    _check_target(pkl_root)
    bad = verify_store(store_root, progress=progress)  # never copy corrupt frames into files that look fine
    if bad:
        raise StoreError(f"{bad[0]}" + (f" (and {len(bad) - 1} more)" if len(bad) > 1 else "")
                         + "; nothing unpacked")
    source = StoreSource(store_root)

    def build(folder: Path) -> None:
        for i, info in enumerate(tqdm(source.sequences, desc="unpack", unit="seq", disable=not progress)):
            save_array(folder / info.subject / info.type / info.view / source.files[i], source.load(i))

    _build_then_rename(pkl_root, build)
    return {"sequences": len(source), "frames": source.total_frames, "bytes": source.frames_bytes}

