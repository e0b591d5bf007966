"""Atomic writes (pipeline/outputs.py): a failure midway leaves no partial file or folder."""

import os

import pytest

from hepatoplan.pipeline import outputs
from hepatoplan.pipeline.outputs import atomic_file, output_folder, write_atomic


class Boom(RuntimeError):
    pass


def test_write_atomic_replaces_whole(tmp_path):
    path = write_atomic(tmp_path / "a.json", "new")
    assert path.read_text() == "new"
    write_atomic(path, b"\x00bytes")
    assert path.read_bytes() == b"\x00bytes"
    assert os.listdir(tmp_path) == ["a.json"]


def test_failure_mid_write_keeps_the_old_file_and_leaves_nothing(tmp_path):
    target = tmp_path / "labels.seg.nrrd"
    target.write_text("old content")
    with pytest.raises(Boom):
        with atomic_file(target) as tmp:
            assert tmp.name == target.name and tmp.parent != tmp_path  # the writer sees the name
            tmp.write_text("half of the new")
            raise Boom
    assert target.read_text() == "old content"
    assert os.listdir(tmp_path) == ["labels.seg.nrrd"]
    with pytest.raises(Boom):
        with atomic_file(tmp_path / "new.png") as tmp:
            tmp.write_bytes(b"\x89PNG partial")
            raise Boom
    assert os.listdir(tmp_path) == ["labels.seg.nrrd"]


def test_a_writer_that_adds_a_second_file(tmp_path):
    """MetaImage writes x.mhd and x.raw: both land beside the target."""
    with atomic_file(tmp_path / "x.mhd") as tmp:
        tmp.write_text("ElementDataFile = x.raw")
        tmp.with_name("x.raw").write_bytes(b"\x01\x02")
    assert sorted(os.listdir(tmp_path)) == ["x.mhd", "x.raw"]


def test_output_folder_failure_leaves_no_folder(tmp_path):
    out = tmp_path / "plan"
    with pytest.raises(Boom):
        with output_folder(out) as tmp:
            (tmp / "labels.nii.gz").write_bytes(b"partial")
            raise Boom
    assert os.listdir(tmp_path) == []


def test_output_folder_moves_report_last_and_replaces_folders(tmp_path, monkeypatch):
    out = tmp_path / "plan"
    (out / "meshes").mkdir(parents=True)
    (out / "meshes" / "stale.stl").write_text("old")
    (out / "keep.txt").write_text("kept")
    moved = []
    replace = os.replace
    monkeypatch.setattr(outputs.os, "replace", lambda a, b: (moved.append(os.path.basename(b)), replace(a, b)))
    with output_folder(out) as tmp:
        (tmp / "report.json").write_text("{}")
        (tmp / "z.nii.gz").write_text("z")
        (tmp / "meshes").mkdir()
        (tmp / "meshes" / "liver.stl").write_text("new")
    assert moved[-1] == "report.json" and sorted(moved) == ["meshes", "report.json", "z.nii.gz"]
    assert sorted(os.listdir(out)) == ["keep.txt", "meshes", "report.json", "z.nii.gz"]
    assert os.listdir(out / "meshes") == ["liver.stl"]
    assert os.listdir(tmp_path) == ["plan"]


def test_failure_while_moving_in_leaves_no_report(tmp_path, monkeypatch):
    """A run killed while the files are moved in never leaves report.json (the mark of a complete
    folder) beside a partial set."""
    out = tmp_path / "plan"
    replace = os.replace

    def failing(a, b):
        if os.path.basename(b) == "labels.nii.gz":
            raise Boom
        replace(a, b)

    monkeypatch.setattr(outputs.os, "replace", failing)
    with pytest.raises(Boom):
        with output_folder(out) as tmp:
            (tmp / "report.json").write_text("{}")
            (tmp / "labels.nii.gz").write_text("x")
    assert not (out / "report.json").exists()
    assert os.listdir(tmp_path) == ["plan"]  # the temporary folder is gone
