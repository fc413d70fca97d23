"""Damaged data pickles (a CIFAR batch whose bytes were corrupted): losscli's one line, nothing else.

A protocol-5 pickle stores a numpy array's bytes as ``BYTEARRAY8 <length>``. A damaged length asking
for exabytes made CPython 3.11's unpickler fail to allocate the bytearray and free a half-built one,
whose destructor *printed* "SystemError: deallocated bytearray object has exported buffers" before
losscli's message (when the freed memory held nonzero bytes). The opcodes are now checked before
unpickling, so no impossible length reaches the unpickler.
"""

from __future__ import annotations

import gc
import pickle
import random
import struct
import subprocess
import sys
import time

import numpy as np
import pytest

from losscli.errors import UsageError
from losscli.safeload import load_numpy_pickle
from tests.cli_helpers import one_line_exit_2

#: PROTO 5, then a BYTEARRAY8 asking for 3e18 bytes with 3 bytes of data
IMPOSSIBLE_BYTEARRAY = b"\x80\x05\x96" + struct.pack("<Q", 3 * 10**18) + b"abc"


def _dirty_heap(byte: int = 1) -> None:
    """Leave freed small blocks full of nonzero bytes (where a bytearray header is allocated next)."""
    junk = [bytes([byte]) * 21 for _ in range(2000)]
    del junk


def _batch(n: int = 4) -> dict:
    return {"data": np.arange(n * 12, dtype=np.uint8).reshape(n, 12), "labels": list(range(n)),
            b"batch_label": b"training batch 1 of 5", "filenames": [f"img_{i}.png" for i in range(n)]}


def test_an_impossible_bytearray_length_prints_nothing_but_losscli_s_line(tmp_path, capfd):
    path = tmp_path / "data_batch_1"
    path.write_bytes(IMPOSSIBLE_BYTEARRAY)
    for byte in (1, 7, 255):
        _dirty_heap(byte)
        with pytest.raises(UsageError, match="is not a readable data pickle"):
            load_numpy_pickle(path)
    out, err = capfd.readouterr()
    assert err == "" and out == ""


def test_a_memo_index_far_beyond_the_data_is_refused_at_once(tmp_path):
    """A damaged LONG_BINPUT index (680 million) made the unpickler grow its memo table to gigabytes (20 s)."""
    data = bytearray(pickle.dumps(_batch(), protocol=2))
    put = data.index(b"q\x01")  # BINPUT 1 -> LONG_BINPUT 680825748
    data[put:put + 2] = b"r" + struct.pack("<I", 680825748)
    path = tmp_path / "batch"
    path.write_bytes(bytes(data))
    start = time.perf_counter()
    with pytest.raises(UsageError, match="is not a readable data pickle"):
        load_numpy_pickle(path)
    assert time.perf_counter() - start < 2


@pytest.fixture
def unraisable(monkeypatch):
    """What reaches ``sys.unraisablehook`` (exceptions in destructors, which CPython prints)."""
    seen: list = []
    monkeypatch.setattr(sys, "unraisablehook", lambda u: seen.append(f"{u.exc_type.__name__}: {u.exc_value}"))
    return seen


@pytest.mark.parametrize("flags", [1, 3, 8, 127])
def test_damaged_dtype_flags_are_refused_before_numpy_applies_them(flags, tmp_path, capfd, unraisable):
    """A uint8 dtype whose pickled flags claim object references (1) or a list pickle (2): numpy applied
    them, and freeing the arrays printed "Exception ignored in: None ... RuntimeError: Internal error,
    `get_clear_loop` not set for the DType 'uint8'" before losscli's line."""
    data = pickle.dumps({"data": np.arange(24, dtype=np.uint8).reshape(2, 12), "labels": [0, 1]}, protocol=4)
    state = b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00t"
    assert data.count(state) == 1
    path = tmp_path / "batch"
    path.write_bytes(data.replace(state, state[:-3] + b"K" + bytes([flags]) + b"t"))
    with pytest.raises(UsageError, match="is not a readable data pickle"):
        load_numpy_pickle(path)
    gc.collect()
    assert unraisable == [] and capfd.readouterr() == ("", "")
    path.write_bytes(data)
    assert load_numpy_pickle(path)["data"].dtype.flags == 0  # the undamaged file reads


def test_object_and_text_arrays_still_read(tmp_path):
    """Protocol 2 (bytes as _codecs.encode) and 5 (arrays as _frombuffer) were refused as "code"."""
    data = {"o": np.array([1, "a", None], dtype=object), "u": np.array(["ab", "c"]), "s": np.array([b"x", b"yz"]),
            "f": np.float32(2.5), "b": np.array([True, False])}
    for protocol in (2, 4, 5):  # bytes at protocol 2 are _codecs.encode; arrays at 5 are _frombuffer
        path = tmp_path / f"p{protocol}"
        path.write_bytes(pickle.dumps(data, protocol=protocol))
        back = load_numpy_pickle(path)
        assert back["o"].tolist() == [1, "a", None] and back["u"].tolist() == ["ab", "c"]
        assert back["s"].tolist() == [b"x", b"yz"] and back["f"] == np.float32(2.5) and back["b"].tolist() == [1, 0]


def test_an_object_array_shorter_than_its_shape_is_refused_not_a_crash(tmp_path):
    """numpy's ndarray.__setstate__ read past a list shorter than the shape: a segmentation fault.
    Run in a child process, so that a regression fails the test rather than killing the test run."""
    data = pickle.dumps({"o": np.array([1, "a"], dtype=object)}, protocol=4)
    assert data.count(b"K\x02\x85") == 1  # shape (2,) -> (71,)
    path = tmp_path / "batch"
    path.write_bytes(data.replace(b"K\x02\x85", b"K\x47\x85"))
    code = ("import sys; from losscli.errors import UsageError; from losscli.safeload import load_numpy_pickle\n"
            "try:\n    load_numpy_pickle(sys.argv[1])\nexcept UsageError as e:\n    print(e)")
    done = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "is not a readable data pickle (ValueError)" in done.stdout, done
    assert done.stderr == ""


@pytest.mark.parametrize("old, new", [
    (b"\x8c\x02u1", b"\x8c\x04u1,("),  # numpy parses 'u1,(' with ast.literal_eval: SyntaxError escaped
    (b"\x89\x88\x87", b"\x8c\x018\x88\x87"),  # dtype('u1', align='8'): numpy's deprecation warning printed
])
def test_a_damaged_dtype_argument_is_one_line(old, new, tmp_path, capfd):
    data = pickle.dumps({"data": np.zeros(3, dtype=np.uint8)}, protocol=4)
    assert data.count(old) == 1
    path = tmp_path / "batch"
    path.write_bytes(data.replace(old, new))
    with pytest.raises(UsageError, match=r"is not a readable data pickle \((SyntaxError|VisibleDeprecationWarning)\)"):
        load_numpy_pickle(path)
    assert capfd.readouterr() == ("", "")


@pytest.mark.parametrize("old, new", [
    (b"\x8c\x02i8", b"\x8c\x02m8"),  # an int64 array's dtype read as timedelta64: numpy's __setstate__ crashed
    (b"\x8c\x02U2", b"\x8c\x02U9"),  # a text dtype whose pickled item size (8) is not its own
])
def test_a_dtype_numpy_cannot_rebuild_safely_is_refused_in_a_child_process(old, new, tmp_path):
    data = pickle.dumps({"i": np.arange(3, dtype=np.int64), "u": np.array(["ab"])}, protocol=4)
    assert data.count(old) == 1
    path = tmp_path / "batch"
    path.write_bytes(data.replace(old, new))
    code = ("import sys; from losscli.errors import UsageError; from losscli.safeload import load_numpy_pickle\n"
            "try:\n    load_numpy_pickle(sys.argv[1])\nexcept UsageError as e:\n    print(e)")
    done = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "is not a readable data pickle (ValueError)" in done.stdout, done
    assert done.stderr == ""


def test_bytes_under_another_codec_are_not_data(tmp_path):
    """A protocol-2 pickle stores bytes as _codecs.encode(text, 'latin1'); a damaged codec name escaped
    as LookupError ("unknown encoding: lathn1"), and no other codec is data."""
    data = pickle.dumps({"b": b"xyz"}, protocol=2)
    for codec in (b"lathn1", b"rot_13"):
        path = tmp_path / "batch"
        path.write_bytes(data.replace(b"X\x06\x00\x00\x00latin1", b"X\x06\x00\x00\x00" + codec))
        with pytest.raises(UsageError, match=r"is not a readable data pickle \(ValueError\)"):
            load_numpy_pickle(path)


def test_structured_dtypes_are_not_data(tmp_path):
    path = tmp_path / "batch"
    path.write_bytes(pickle.dumps(np.zeros(2, dtype=[("a", "u1"), ("b", "f4")]), protocol=4))
    with pytest.raises(UsageError, match="is not a readable data pickle"):
        load_numpy_pickle(path)


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_randomly_damaged_pickles_are_one_line_or_data(protocol, tmp_path, capfd, unraisable):
    """Flipped, overwritten, inserted and dropped bytes and truncations of a batch: each either still
    reads as data or is losscli's UsageError; nothing is printed and nothing else escapes."""
    original = pickle.dumps(_batch(), protocol=protocol)
    rng = random.Random(protocol)
    path = tmp_path / "batch"
    for _ in range(300):
        data = bytearray(original)
        for _ in range(rng.randint(1, 3)):
            i = rng.randrange(len(data))
            kind = rng.randrange(5)
            if kind == 0:
                data[i] ^= 1 << rng.randrange(8)
            elif kind == 1:
                data[i] = rng.choice([0, 0x7f, 0x80, 0xff, 0x96, rng.randrange(256)])
            elif kind == 2:
                data[i:i] = bytes([rng.randrange(256)])
            elif kind == 3:
                del data[i]
            else:
                del data[i + 1:]
        path.write_bytes(bytes(data))
        _dirty_heap()
        try:
            load_numpy_pickle(path)
        except UsageError:
            pass
    gc.collect()
    out, err = capfd.readouterr()
    assert err == "" and out == "" and unraisable == []


def test_a_damaged_dtype_state_is_one_line(tmp_path):
    """numpy's dtype.__setstate__ given a 9-tuple with flags None returns NULL without an exception:
    CPython raised SystemError, which escaped the loader (exit 1, "error: SystemError: ..."). The
    state is now checked before numpy sees it."""
    data = pickle.dumps(np.zeros(3, dtype=np.uint8), protocol=4)
    state = b"K\x03\x8c\x01|\x94NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00t"
    assert state in data
    path = tmp_path / "batch"
    path.write_bytes(data.replace(state, state[:-3] + b"NK\x00t"))  # (3, '|', None, None, None, -1, -1, None, 0)
    with pytest.raises(UsageError, match=r"is not a readable data pickle \(ValueError\)"):
        load_numpy_pickle(path)


def test_a_damaged_cifar_batch_is_one_line_exit_2(tmp_path, capsys):
    d = tmp_path / "data" / "cifar-10-batches-py"
    d.mkdir(parents=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        (d / name).write_bytes(pickle.dumps(_batch(), protocol=2))
    (d / "data_batch_3").write_bytes(IMPOSSIBLE_BYTEARRAY)
    _dirty_heap()
    one_line_exit_2(["train", "--dataset", "cifar10", "--data-dir", str(tmp_path / "data"), "--epochs", "1",
                     "--device", "cpu", "--quiet", "--out", str(tmp_path / "r")], capsys, needle="data_batch_3")
    assert not (tmp_path / "r").exists()
