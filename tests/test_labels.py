"""The label scheme, names, colours and coded concepts (pipeline/labels.py)."""

import numpy as np
import pytest

from hepatoplan.errors import LabelError
from hepatoplan.pipeline import labels as L


def _pydicom_codes():
    """Every code of pydicom's copy of DICOM PS3.16, by (scheme, value) -> its meanings."""
    from pydicom.sr.codedict import codes

    found: dict[tuple[str, str], set[str]] = {}
    for scheme in ("SCT",):
        collection = getattr(codes, scheme)
        for keyword in collection.dir():
            code = getattr(collection, keyword)
            found.setdefault((code.scheme_designator, code.value), set()).add(code.meaning)
    return found


def test_couinaud_segment_codes_are_dicom_cid_7170():
    from pydicom.sr.codedict import codes

    cid = codes.cid7170
    expected = {k: getattr(cid, f"CouinaudHepaticSegment{roman}")
                for k, roman in enumerate(["I", "II", "III", "IV", "V", "VI", "VII", "VIII"], start=1)}
    for k in range(1, 9):
        assert L.COUINAUD_SEGMENTS[k] == (expected[k].value, expected[k].scheme_designator,
                                          expected[k].meaning)
        # kept and resected parts of segment k, as label values and as named structures
        for entry in (L.label_entry(k), L.label_entry(k + 10), L.structure_entry(f"segment {k}"),
                      L.structure_entry(f"Segment {k} resected")):
            assert entry.property_type == L.COUINAUD_SEGMENTS[k]
            assert entry.category == L.ANATOMICAL_STRUCTURE
    assert len({c.value for c in L.COUINAUD_SEGMENTS.values()}) == 8


def test_every_standard_code_is_in_dicom_ps3_16():
    """Codes are data in labels.py (pydicom's dictionary takes ~1 s to import): each must be the
    standard's, value and meaning, and categories must be CID 7150's."""
    from pydicom.sr.codedict import codes

    known = _pydicom_codes()
    names = ["liver", "remnant", "resected", "tumour 4", "portal vein", "hepatic veins", "IVC"]
    entries = [L.label_entry(v) for v in (*L.LABEL_TABLE, 21, 57)] + [L.structure_entry(n) for n in names]
    categories = {(c.scheme_designator, c.value) for c in
                  (getattr(codes.cid7150, k) for k in codes.cid7150.dir())}
    for e in entries:
        for code in (e.category, e.property_type):
            assert code.meaning in known[(code.scheme, code.value)], (e.name, code)
        assert (e.category.scheme, e.category.value) in categories, e.name


def test_unknown_structure_gets_a_private_code():
    entry = L.structure_entry("Gall bladder (manual)")
    assert entry.property_type == L.Code("GALL_BLADDER_MAN", "99HEPATOPLAN", "Gall bladder (manual)")
    assert entry.property_type.scheme.startswith("99")  # PS3.3 8.2: private coding scheme
    assert len(L.private_code("x" * 40).value) == 16
    assert L.private_code("!!!").value == "STRUCTURE"


def test_tumour_colours_differ_and_are_deterministic():
    colours = [L.tumour_colour_rgb(i) for i in range(1, 201)]
    assert len(set(colours)) == 200
    assert colours[0] == (255, 225, 0)  # tumour 1 keeps the yellow of the earlier single colour
    assert colours == [L.tumour_colour_rgb(i) for i in range(1, 201)]
    # the first tumours are far apart (at least 60 in some channel) ...
    first = np.array(colours[:8], float)
    gaps = np.abs(first[:, None] - first[None]).max(axis=2)[np.triu_indices(8, 1)]
    assert gaps.min() >= 60
    # ... and none takes a vein's colour
    veins = [L.PORTAL_VEIN_COLOUR_RGB, L.HEPATIC_VEIN_COLOUR_RGB, L.IVC_COLOUR_RGB]
    assert min(np.abs(np.subtract(c, v)).max() for c in colours for v in veins) >= 40
    # label values, structure names and colour table agree
    assert L.label_entry(23).colour_rgb == L.structure_entry("tumour 3").colour_rgb == colours[2]


def test_label_table_scheme():
    assert L.label_entry(5).name == "segment 5 kept"
    assert L.label_entry(15).name == "segment 5 resected"
    assert L.label_entry(9).name == "liver kept" and L.label_entry(19).name == "liver resected"
    assert L.label_entry(23).name == "tumour 3"
    assert L.label_entry(23).property_type == L.NEOPLASM
    assert set(L.LABEL_TABLE) == set(range(1, 10)) | set(range(11, 20))
    with pytest.raises(LabelError):
        L.label_entry(10)
    assert L.structure_entry("portal vein").property_type.value == "32764006"
    assert L.structure_entry("hepatic veins").property_type.value == "8993003"
    assert L.structure_entry("Segment 3").colour_rgb == L.LABEL_TABLE[3].colour_rgb
    assert L.label_entry(15).colour_rgb == tuple(round(c * 0.55) for c in L.LABEL_TABLE[5].colour_rgb)


def test_label_map_scheme_round_trip():
    """label_map and structures_from_labels invert each other on an anisotropic phantom."""
    shape = (12, 10, 6)
    x = np.indices(shape)[0]
    liver = np.ones(shape, bool)
    liver[0] = False
    segments = np.where(x < 6, 5, 8).astype(np.uint8)
    segments[:, :2] = 0  # liver without a segment label
    tumours = np.zeros(shape, np.uint8)
    tumours[3, 5, 2] = 1
    tumours[9, 5, 2:4] = 2
    resected = x >= 6
    labels = L.label_map(liver=liver, segments=segments, tumours=tumours, resected=resected)
    assert labels.dtype == np.uint8
    assert labels[0].max() == 0
    assert labels[3, 5, 0] == 5 and labels[9, 5, 0] == 18 and labels[3, 0, 0] == 9
    assert labels[9, 0, 0] == 19 and labels[3, 5, 2] == 21 and labels[9, 5, 3] == 22
    structures = L.structures_from_labels(labels)
    assert list(structures) == ["segment 5", "segment 8", "remnant", "resected", "tumour 1", "tumour 2"]
    np.testing.assert_array_equal(structures["resected"], liver & resected & (tumours == 0))
    np.testing.assert_array_equal(structures["tumour 2"], tumours == 2)
    many = np.zeros(shape, np.uint16)
    many.flat[:300] = np.arange(1, 301)
    assert L.label_map(liver=liver, segments=None, tumours=many, resected=None).dtype == np.uint16


def test_label_map_outside_the_livers_box():
    """label_map works in the liver's box: segments and resection outside the liver stay 0, a tumour
    outside the liver (and its box) is labelled; the same as the voxelwise scheme everywhere."""
    rng = np.random.default_rng(3)
    shape = (14, 11, 9)
    liver = np.zeros(shape, bool)
    liver[4:9, 3:8, 2:6] = rng.random((5, 5, 4)) < 0.8
    segments = rng.integers(0, 9, shape).astype(np.uint8)
    resected = rng.random(shape) < 0.5
    tumours = np.zeros(shape, np.uint8)
    tumours[5, 4, 3], tumours[12, 1, 7] = 1, 2  # tumour 2 outside the liver's box
    labels = L.label_map(liver=liver, segments=segments, tumours=tumours, resected=resected)
    expected = np.where(liver, np.where(segments > 0, segments, L.LIVER_KEPT_LABEL)
                        + L.RESECTED_LABEL_OFFSET * resected, 0)
    expected = np.where(tumours > 0, tumours + L.TUMOUR_LABEL_OFFSET, expected)
    np.testing.assert_array_equal(labels, expected)
    assert labels[12, 1, 7] == 22 and not L.label_map(liver=np.zeros(shape, bool), segments=None, tumours=None,
                                                        resected=None).any()
