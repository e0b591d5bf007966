"""Shared fixtures: where the real data lives, and a skip when it is absent; the ``real_data`` marker.

Markers (registered in pyproject.toml):

- ``slow``: tests that take more than about a second on a quiet 2-core machine (``pytest -m
  "not slow"`` is the quick loop): marked in their file (``@pytest.mark.slow``), or listed in
  :data:`SLOW` below and marked here (every parametrisation);
- ``real_data``: set here on every test that reads ../shared/data: its function or one of its
  fixtures (however deep) names a module-level path under ``DATA_DIR`` or asks for ``ircadb_dir``
  by name (``pytest -m "not real_data"`` runs without the data).

Order: the files of :data:`HEAVY_FIRST` run first, heaviest first, the others after them in their
own order. With ``-n N`` pytest-xdist hands out whole files (``--dist loadfile``, pyproject.toml),
so a file's module fixtures (a plan of IRCADb 01, Orthanc, the MR phantom's segmentation) are built
once, and the longest files start first instead of ending the run on one worker.
"""

import sys
import types
from pathlib import Path

import pytest

DATA_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data"
IRCADB_DIR = DATA_DIR / "ircadb"


#: Tests over ~5 s in ``pytest --durations=80`` of the whole suite on the shared machine (load
#: 13-18 on 2 cores: 49 min wall for ~8 min CPU, so ~0.6 s and more on a quiet machine); a file
#: name alone marks its every test (modules whose shared fixture is the cost: Orthanc and a plan,
#: the MR phantom's segmentation).
SLOW = (
    "test_dicomweb.py",
    "test_mr_liver.py",
    "test_cmd_staging.py::test_stage_inadequate_prints_one_row_per_technique",
    "test_code_shape.py::test_no_function_is_too_long_or_takes_too_many_parameters",
    "test_intake_corpus.py::test_growth_near_zero_growth_is_bounded",
    "test_couinaud.py::test_liver_cut_by_the_scan_keeps_vessel_heights",
    "test_batch.py::test_batch_isolates_the_broken_study_and_resumes",
    "test_batch.py::test_changed_rows_are_recomputed_and_failures_keep_no_old_report",
    "test_batch.py::test_killed_run_resumes_without_recomputing",
    "test_cmd_staging.py::test_growth_with_parenchyma_target_kgr_and_plot",
    "test_couinaud.py::test_cli_subprocess",
    "test_couinaud.py::test_flipped_axes_give_the_same_segments",
    "test_couinaud.py::test_params_are_returned_and_override_the_defaults",
    "test_couinaud.py::test_phantom_acceptance_per_segment_dice",
    "test_couinaud.py::test_real_case",
    "test_couinaud.py::test_spacings_agree",
    "test_couinaud.py::test_split_segment_4",
    "test_couinaud_vessels.py::test_ircadb_02_from_the_combined_intrahepatic_mask",
    "test_couinaud_vessels.py::test_ircadb_06_wrong_roots_give_a_low_confidence_and_a_warning",
    "test_couinaud_vessels.py::test_ircadb_07_tree_rooted_at_the_expected_bifurcation",
    "test_dicomweb.py::test_batch_of_two_urls_one_unknown",
    "test_dicomweb.py::test_file_based_plan_of_the_same_series_gives_the_same_numbers",
    "test_dicomweb.py::test_round_trip_without_frame_of_reference",
    "test_dicomweb.py::test_segment_accepts_a_series_url",
    "test_intake_corpus.py::test_dicom_case",
    "test_intake_corpus.py::test_dicom_seg_passes_dciodvfy",
    "test_intake_corpus.py::test_named_pipes_never_hang",
    "test_io.py::test_orientation_is_nibabels",
    "test_layering.py::test_no_bare_import_of_a_generic_name",
    "test_mr_liver.py::test_chaos_t2_spir",
    "test_mr_liver.py::test_chaos_with_the_top_cut_off",
    "test_mr_liver.py::test_mirrored_phantom_is_not_a_confident_liver",
    "test_mr_liver.py::test_plan_on_mr_in_other_units_reports_tumours_and_vessels_not_assessed",
    "test_mr_liver.py::test_totalsegmentator_mr_example",
    "test_mr_liver.py::test_unrecognised_contrast_fails_the_checks",
    "test_packaging.py::test_wheel_installs_only_the_hepatoplan_name",
    "test_phantom.py::test_cli_as_a_subprocess",
    "test_plan_cli.py::test_demo_runs_and_subprocess_entry_point",
    "test_plan_cli.py::test_ircadb01_volumes_are_voxel_counts_and_right_hepatectomy_flr",
    "test_plan_cli.py::test_totalsegmentator_multilabel_on_a_dicom_series",
    "test_preview.py::test_label_structures_meshed_in_their_boxes_with_parenchyma_blocks",
    "test_preview.py::test_render_previews_not_blank_and_oriented",
    "test_report_html.py::test_report_loads_in_headless_chromium",
    "test_report_html.py::test_viewer_state_from_link",
    "test_report_html.py::test_write_plan_visuals_bundle",
    "test_segmentation.py::test_head_like_scan_is_rejected",
    "test_segmentation.py::test_ircadb_01_on_thick_slices",
    "test_segmentation.py::test_ircadb_01_study",
    "test_segmentation.py::test_ircadb_07_liver",
    "test_segmentation.py::test_ircadb_07_with_its_top_cut_off",
    "test_segmentation.py::test_mirrored_phantom_is_not_a_confident_liver",
    "test_segmentation.py::test_plan_study_records_the_parameters_of_what_ran",
    "test_segmentation.py::test_totalsegmentator_examples",
    "test_slice_viewer.py::test_overlay_aligned_with_the_ct",
    "test_slice_viewer.py::test_phantom_tumour_overlay_on_the_axial_view_where_the_tumour_is",
    "test_slice_viewer.py::test_phantom_views_follow_clicks_wheel_and_the_tumour_table",
    "test_slice_viewer.py::test_phantom_views_to_scale_and_in_radiological_convention",
    # added 2026-12-03 (quick loop `--durations=20`, quiet: 1.2-6 s each, Chromium and a phantom plan)
    "test_slice_viewer.py::test_phantom_montage_outlines_on_every_panel",
    "test_couinaud_vessels.py::test_ircadb_06_rootless_piece_rooted_near_the_ivc",
    # added 2026-12-04 (quick loop, per-test rusage at load ~12: 3.0 s CPU, the PDF and pdftoppm)
    "test_slice_viewer.py::test_phantom_pdf_renders_with_pdftoppm",
)


#: Test files by CPU seconds (its processes and their children) in a whole-suite run with ``-n 2``
#: (2026-12-03, load 15-20: 466 s in all): 106, 59, 47, 36, 31, 28, 27, 27, 23, 22, 17, 8, 7, 6, 4;
#: the other files together 20 s.
HEAVY_FIRST = (
    "test_segmentation.py", "test_mr_liver.py", "test_vascular.py", "test_couinaud.py", "test_intake_corpus.py",
    "test_dicomweb.py", "test_slice_viewer.py", "test_couinaud_vessels.py", "test_output_quality.py",
    "test_batch.py", "test_plan_cli.py", "test_preview.py", "test_report_html.py", "test_packaging.py",
    "test_phantom.py",
)


@pytest.fixture(scope="session")
def ircadb_dir() -> Path:
    if not IRCADB_DIR.is_dir():
        pytest.skip(f"real data not found at {IRCADB_DIR} (CI has it; see ../shared/data/README.md)")
    return IRCADB_DIR


def _data_names(module) -> frozenset[str]:
    """Names of ``module``'s globals that are paths to the shared data (or below it)."""
    return frozenset(name for name, value in vars(module).items()
                     if isinstance(value, Path) and (value == DATA_DIR or DATA_DIR in value.parents))


def _names(code: types.CodeType) -> set[str]:
    """Global names and string constants of a function's code (``request.getfixturevalue("x")``
    names fixture x), its nested functions and comprehensions included."""
    names = set(code.co_names) | {c for c in code.co_consts if isinstance(c, str)}
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _names(const)
    return names


def _reads_data(function) -> bool:
    function = getattr(function, "__wrapped__", function)
    code = getattr(function, "__code__", None)
    module = sys.modules.get(getattr(function, "__module__", ""), None)
    return code is not None and module is not None and bool(_names(code) & (_data_names(module) | {"ircadb_dir"}))


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(HEAVY_FIRST)}
    items.sort(key=lambda item: rank.get(Path(item.fspath).name, len(rank)))  # stable: each file's own order kept
    slow = set(SLOW)
    for item in items:
        if not isinstance(item, pytest.Function):
            continue
        if Path(item.fspath).name in slow or f"{Path(item.fspath).name}::{item.originalname}" in slow:
            item.add_marker(pytest.mark.slow)
        fixtures = [d.func for defs in item._fixtureinfo.name2fixturedefs.values() for d in defs]
        if any(_reads_data(f) for f in [item.function, *fixtures]):
            item.add_marker(pytest.mark.real_data)
