"""Atomic writes (pipeline/outputs.py): a failure midway leaves no partial file or folder."""

import os

import pytest

from hepatoplan.pipeline import outputs
from hepatoplan.errors import InputError
from hepatoplan.pipeline.outputs import atomic_file, check_output_folder, output_folder, write_atomic


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


def test_output_folder_failure_removes_the_parents_it_made(tmp_path):
    (tmp_path / "kept").mkdir()
    (tmp_path / "kept" / "other.txt").write_text("x")
    with pytest.raises(Boom):
        with output_folder(tmp_path / "kept" / "new" / "deeper" / "plan"):
            raise Boom
    assert os.listdir(tmp_path) == ["kept"] and os.listdir(tmp_path / "kept") == ["other.txt"]
    with output_folder(tmp_path / "kept" / "new" / "plan") as tmp:  # success: the parents stay
        (tmp / "report.json").write_text("{}")
    assert (tmp_path / "kept" / "new" / "plan" / "report.json").is_file()


def test_output_folder_replaces_an_earlier_folder_as_a_whole(tmp_path):
    out = tmp_path / "plan"
    (out / "meshes").mkdir(parents=True)
    (out / "meshes" / "stale.stl").write_text("old")
    (out / "remnant.nii.gz").write_text("an earlier run's")
    with output_folder(out) as tmp:
        (tmp / "report.json").write_text("{}")
        (tmp / "meshes").mkdir()
        (tmp / "meshes" / "liver.stl").write_text("new")
        assert (out / "remnant.nii.gz").exists()  # the old folder stays until the new one is complete
    assert sorted(os.listdir(out)) == ["meshes", "report.json"]
    assert os.listdir(out / "meshes") == ["liver.stl"]
    assert os.listdir(tmp_path) == ["plan"]


def test_failure_while_renaming_keeps_the_old_folder(tmp_path, monkeypatch):
    """A failure when the new folder is renamed into place leaves the earlier folder complete
    (or, if it happens between the two renames, beside as .plan.old-*), never a mix."""
    out = tmp_path / "plan"
    out.mkdir()
    (out / "report.json").write_text("old")
    replace = os.replace

    def failing(a, b):
        if os.path.basename(b) == "plan":
            raise Boom
        replace(a, b)

    monkeypatch.setattr(outputs.os, "replace", failing)
    with pytest.raises(Boom):
        with output_folder(out) as tmp:
            (tmp / "report.json").write_text("new")
    assert not (out / "report.json").exists() or (out / "report.json").read_text() == "old"
    assert not any(p.name.startswith(".plan.") and not p.name.startswith(".plan.old-") for p in tmp_path.iterdir())


def _refusal(out, **kw) -> str:
    with pytest.raises(InputError) as info:
        check_output_folder(out, **kw)
    return str(info.value)


def test_check_output_folder_rules(tmp_path, monkeypatch):
    study = tmp_path / "study"
    study.mkdir()
    ct = study / "ct.nii.gz"
    ct.write_bytes(b"ct")
    series = tmp_path / "series"
    series.mkdir()
    (series / "1.dcm").write_bytes(b"d")
    inputs = [ct, series, None, "https://pacs/dicom-web/studies/1/series/2"]
    monkeypatch.chdir(tmp_path)
    assert check_output_folder(study / "plan", inputs=inputs) == study / "plan"  # beside an input file: fine
    assert check_output_folder(tmp_path / "new" / "deeper", inputs=inputs)  # parents are created later
    assert "empty path" in _refusal("", inputs=inputs)
    assert "current folder" in _refusal(".", inputs=inputs)
    assert "current folder" in _refusal(tmp_path.parent, inputs=inputs)
    assert "folder of the input" in _refusal(study, inputs=inputs)
    assert "input folder" in _refusal(series, inputs=inputs)
    assert "inside the input folder" in _refusal(series / "plan", inputs=inputs)
    assert "not a folder" in _refusal(ct, inputs=[])
    (tmp_path / "link").symlink_to(tmp_path / "nowhere")
    assert "does not exist" in _refusal(tmp_path / "link", inputs=inputs)
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("a user's")
    message = _refusal(mine, inputs=inputs)
    assert "not hepatoplan's output" in message and "--overwrite" in message and str(mine) in message
    assert check_output_folder(mine, inputs=inputs, overwrite=True) == mine
    (mine / "report.json").write_text("{}")
    assert check_output_folder(mine, inputs=inputs) == mine  # an earlier run's: replaced
    (tmp_path / "empty").mkdir()
    assert check_output_folder(tmp_path / "empty", inputs=inputs)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_check_output_folder_unwritable(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        assert "cannot write" in _refusal(locked / "plan", inputs=[])
        assert os.listdir(locked) == []
    finally:
        locked.chmod(0o755)
