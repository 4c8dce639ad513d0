"""A fixed collection of hostile and malformed input files, written by hand opcode by opcode.

``write_hostile_pickles(folder)`` and ``write_hostile_npz(folder)`` return ``{name: path}``; every file must
be refused by gaitrec's readers with one clear error naming it, without running code, allocating what the
file declares or crashing the interpreter. Run as a script to write them into a folder for manual checks:
``python tests/hostile.py OUT``.
"""
from __future__ import annotations

import io
import pickle
import struct
import sys
import zipfile
from pathlib import Path

import numpy as np

# --- raw pickle opcodes (protocol 2), enough to write any call numpy's allowed globals could make
PROTO2 = b"\x80\x02"
STOP = b"."
MARK, TUPLE, REDUCE, BUILD = b"(", b"t", b"R", b"b"
NONE, TRUE, FALSE = b"N", b"\x88", b"\x89"
EMPTY_DICT, SETITEM = b"}", b"s"


def glob(module: str, name: str) -> bytes:
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def uni(text: str) -> bytes:
    data = text.encode("utf-8")
    return b"X" + struct.pack("<I", len(data)) + data


def raw(data: bytes) -> bytes:
    return b"B" + struct.pack("<I", len(data)) + data  # BINBYTES (protocol 3 opcode, accepted by any unpickler)


def integer(n: int) -> bytes:
    if -(2**31) <= n < 2**31:
        return b"J" + struct.pack("<i", n)
    body = n.to_bytes((n.bit_length() + 8) // 8, "little", signed=True)
    return b"\x8a" + bytes([len(body)]) + body  # LONG1


def tup(*items: bytes) -> bytes:
    return MARK + b"".join(items) + TUPLE


def dtype(code: str, state: bytes) -> bytes:
    return glob("numpy", "dtype") + tup(uni(code), FALSE, TRUE) + REDUCE + state + BUILD


def plain_state(order="|") -> bytes:
    return tup(integer(3), uni(order), NONE, NONE, NONE, integer(-1), integer(-1), integer(0))


def array(shape: tuple, dtype_bytes: bytes, data: bytes) -> bytes:
    head = glob("numpy.core.multiarray", "_reconstruct") + tup(glob("numpy", "ndarray"), tup(integer(0)), raw(b"b"))
    state = tup(integer(1), tup(*(integer(n) for n in shape)), dtype_bytes, FALSE, raw(data))
    return PROTO2 + head + REDUCE + state + BUILD + STOP


def hostile_pickles() -> dict[str, bytes]:
    """name -> file content."""
    object_fields = (b"(" + uni("a") + TUPLE + EMPTY_DICT + uni("a") + tup(dtype("O8", plain_state()), integer(0))
                     + SETITEM)
    # A structured dtype {'a': object} whose state clears the has-objects flag (flags 0): numpy would read
    # the raw bytes as a PyObject pointer.
    object_struct = dtype("V8", tup(integer(3), uni("|"), NONE) + b"" )  # replaced below
    object_struct = (glob("numpy", "dtype") + tup(uni("V8"), FALSE, TRUE) + REDUCE
                     + tup(integer(3), uni("|"), NONE, object_fields, integer(8), integer(1), integer(0)) + BUILD)
    files = {
        "object_dtype_flags_cleared": array((1,), object_struct, b"\x41" * 8),
        "codecs_os_system": PROTO2 + glob("_codecs", "encode") + tup(uni("id"), uni("os.system")) + REDUCE + STOP,
        "ndarray_93_gib": PROTO2 + glob("numpy", "ndarray") + tup(tup(integer(100000), integer(1000), integer(1000)))
                          + REDUCE + STOP,
        "declares_2_gb": array((2**31,), dtype("u1", plain_state()), b"\0" * 8),
        "declares_negative": array((-5, 4), dtype("u1", plain_state()), b"\0" * 8),
        "shape_not_ints": array((2,), dtype("u1", plain_state()), b"\0" * 2).replace(integer(2), uni("2"), 1),
        "ndim_40": array((1,) * 40, dtype("u1", plain_state()), b"\0"),
        "string_dtype": array((2,), dtype("U1", plain_state("<")), b"\0" * 8),
        "complex_dtype": array((1,), dtype("c16", plain_state("<")), b"\0" * 16),
        "object_dtype": array((1,), dtype("O8", plain_state()), b"\0" * 8),
        "dtype_state_with_subarray": array((1,), dtype("f4", tup(integer(3), uni("<"), tup(dtype("u1", plain_state()),
                                                                                          tup(integer(4))),
                                                                 NONE, NONE, integer(-1), integer(-1), integer(0))),
                                           b"\0" * 4),
        "os_system": pickle.dumps(_Boom()),
        "a_list": pickle.dumps([1, 2, 3]),
        "a_dict_of_arrays": pickle.dumps({"a": np.zeros(3, np.uint8)}),
        "scalar": pickle.dumps(np.float32(1.0)),
        "truncated": pickle.dumps(np.zeros((4, 8, 8), np.uint8), protocol=4)[:-40],
        "empty": b"",
        "garbage": b"\x80\x04garbage\xff\x00",
        "deep_nesting": PROTO2 + b"(" * 100000 + STOP,
        "huge_binbytes_length": PROTO2 + b"\x8e" + struct.pack("<Q", 2**62) + b"abc" + STOP,
        "reconstruct_other_class": PROTO2 + glob("numpy.core.multiarray", "_reconstruct")
                                   + tup(glob("numpy", "dtype"), tup(integer(0)), raw(b"b")) + REDUCE + STOP,
        "state_twice": array((1,), dtype("u1", plain_state()), b"\0")[:-1]
                       + tup(integer(1), tup(integer(1)), dtype("u1", plain_state()), FALSE, raw(b"\0")) + BUILD + STOP,
    }
    return files


class _Boom:
    def __reduce__(self):
        import os
        return (os.system, ("touch PWNED",))


def write_hostile_pickles(folder: str | Path) -> dict[str, Path]:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, content in hostile_pickles().items():
        paths[name] = folder / f"{name}.pkl"
        paths[name].write_bytes(content)
    return paths


def _npy_header(shape: tuple, descr: str = "<f4") -> bytes:
    header = repr({"descr": descr, "fortran_order": False, "shape": shape}).encode("latin1")
    header += b" " * (63 - (len(header) + 10) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header


def _npz(members: dict[str, bytes], compress: bool = False) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED) as z:
        for name, data in members.items():
            z.writestr(name + ".npy", data)
    return buffer.getvalue()


def _good_members(n: int = 4) -> dict[str, bytes]:
    def npy(a):
        b = io.BytesIO()
        np.save(b, a)
        return b.getvalue()
    return {"embeddings": npy(np.zeros((n, 2, 3), np.float32)), "labels": npy(np.array([str(i) for i in range(n)])),
            "types": npy(np.array(["nm-01"] * n)), "views": npy(np.array(["000"] * n))}


def hostile_npz() -> dict[str, bytes]:
    good = _good_members()

    def npy(a):
        b = io.BytesIO()
        np.save(b, a, allow_pickle=True)
        return b.getvalue()
    # A member that declares 93 GiB of float32 but carries 16 bytes.
    huge = _npy_header((100000, 1000, 250)) + b"\0" * 16
    files = {
        "declares_93_gib": _npz({**good, "embeddings": huge}),
        "object_embeddings": _npz({**good, "embeddings": npy(np.array([None, 1], dtype=object))}),
        "string_embeddings": _npz({**good, "embeddings": npy(np.array([[["a"]]]))}),
        "bytes_embeddings": _npz({**good, "embeddings": npy(np.array([[[b"a"]]]))}),
        "structured_embeddings": _npz({**good, "embeddings": npy(np.zeros((2, 1, 1), dtype=[("a", "<f4")]))}),
        "complex_embeddings": _npz({**good, "embeddings": npy(np.zeros((4, 2, 3), np.complex64))}),
        "zero_width_embeddings": _npz({**good, "embeddings": npy(np.zeros((4, 0, 3), np.float32))}),
        "nan_embeddings": _npz({**good, "embeddings": npy(np.full((4, 2, 3), np.nan, np.float32))}),
        "labels_of_ints_2d": _npz({**good, "labels": npy(np.zeros((4, 2)))}),
        "missing_views": _npz({k: v for k, v in good.items() if k != "views"}),
        "not_a_zip": b"PK\x03\x04 this is not a zip",
        "truncated": _npz(good)[:-30],
        "bad_magic_member": _npz({**good, "embeddings": b"\x93NUMPX" + b"\0" * 100}),
        # The zip directory says the member inflates to 8 GiB (a zip bomb's declaration).
        "zip_declares_8_gib": _zip_with_declared_size(_npz(good, compress=True), 8 << 30),
    }
    return files


def _zip_with_declared_size(data: bytes, size: int) -> bytes:
    """Patch the uncompressed size of the first member in the central directory (ZIP64 not needed < 4 GiB, so
    the value is written as a ZIP64 marker-free 32-bit field, saturated)."""
    data = bytearray(data)
    cd = data.find(b"PK\x01\x02")
    data[cd + 24: cd + 28] = struct.pack("<I", min(size, 0xFFFFFFFE))
    return bytes(data)


def write_hostile_npz(folder: str | Path) -> dict[str, Path]:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, content in hostile_npz().items():
        paths[name] = folder / f"{name}.npz"
        paths[name].write_bytes(content)
    return paths


if __name__ == "__main__":
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "hostile-files")
    written = {**write_hostile_pickles(out / "pkl"), **write_hostile_npz(out / "npz")}
    print(f"{len(written)} hostile files in {out}")
