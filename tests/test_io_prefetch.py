"""The .nii.gz inputs inflated while the modules load (pipeline/io_prefetch.py): the same arrays and the
same refusals as a read that inflates the file itself."""

import gzip
import os

import nibabel as nib
import numpy as np
import pytest

from hepatoplan.errors import InputFileError
from hepatoplan.pipeline import io, io_prefetch

AFFINE = np.diag([0.8, 0.7, 2.5, 1.0])


@pytest.fixture(autouse=True)
def _clean():
    io_prefetch.clear()
    yield
    io_prefetch.clear()


def _save(array, path):
    nib.Nifti1Image(array, AFFINE).to_filename(path)
    return path


def _prefetched(*paths):
    io_prefetch.start([str(p) for p in paths])
    for p in paths:  # wait until each is inflated (taken and put back would race: read the entry)
        entry = io_prefetch._entries[os.path.realpath(p)]
        entry.done.wait(10)
        assert entry.data is not None or p.name.startswith(("cut", "bad"))


def test_inflated_ahead_gives_the_same_arrays(tmp_path):
    rng = np.random.default_rng(0)
    ct = _save(rng.integers(-1000, 2000, (30, 20, 12)).astype(np.int16), tmp_path / "ct.nii.gz")
    mask = _save((rng.random((30, 20, 12)) < 0.3).astype(np.uint8), tmp_path / "m.nii.gz")
    expected = (io.read_image(ct, name="CT").array, io.read_labels(mask, name="--liver", binary=True).array)
    _prefetched(ct, mask)
    assert {p.name for p in io_prefetch.pending()} == {"ct.nii.gz", "m.nii.gz"}
    assert b"".join(io_prefetch._entries[str(ct.resolve())].data) == gzip.decompress(ct.read_bytes())
    got = (io.read_image(ct, name="CT").array, io.read_labels(mask, name="--liver", binary=True).array)
    assert io_prefetch.pending() == []  # each taken once
    for a, b in zip(expected, got):
        assert a.dtype == b.dtype and np.array_equal(a, b)
    assert io_prefetch.take(ct) is None  # a second read inflates the file itself


def test_a_file_changed_since_is_read_afresh(tmp_path):
    path = _save(np.zeros((8, 8, 8), np.uint8), tmp_path / "m.nii.gz")
    _prefetched(path)
    ones = np.ones((8, 8, 8), np.uint8)
    _save(ones, tmp_path / "new.nii.gz").replace(path)  # another inode
    assert io_prefetch.take(path) is None
    _prefetched(path)
    os.utime(path, ns=(0, 0))  # same inode and size, another modification time
    assert io_prefetch.take(path) is None
    assert io.read_labels(path, name="--liver").array.all()


def test_cut_or_corrupt_streams_are_refused_as_without_it(tmp_path):
    good = _save(np.arange(40 * 30 * 20, dtype=np.int16).reshape(40, 30, 20), tmp_path / "g.nii.gz")
    cut = tmp_path / "cut.nii.gz"
    cut.write_bytes(good.read_bytes()[:-64])
    raw = bytearray(good.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    bad = tmp_path / "bad.nii.gz"
    bad.write_bytes(bytes(raw))
    messages = []
    for prefetch in (False, True):
        if prefetch:
            _prefetched(cut, bad)
            assert io_prefetch._entries[str(cut.resolve())].data is None
        for path in (cut, bad):
            with pytest.raises(InputFileError) as err:
                io.read_image(path, name="CT", header_only=True)
            messages.append(str(err.value))
    assert messages[:2] == messages[2:] and "truncated" in messages[0]


def test_only_existing_nifti_gz_arguments_are_inflated(tmp_path):
    mask = _save(np.zeros((4, 4, 4), np.uint8), tmp_path / "m.nii.gz")
    plain = _save(np.zeros((4, 4, 4), np.uint8), tmp_path / "p.nii")
    written = _save(np.zeros((4, 4, 4), np.uint8), tmp_path / "out.nii.gz")
    io_prefetch.start(["plan", str(plain), f"--liver={mask}", "--tumours", str(tmp_path / "missing.nii.gz"),
                       "--out", str(written), f"--out={written}"])
    assert io_prefetch.pending() == [mask.resolve()]
    io_prefetch.clear()
    assert io_prefetch.pending() == [] and io_prefetch.take(mask) is None
