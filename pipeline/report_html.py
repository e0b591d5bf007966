"""The self-contained HTML report: verdict, summary, the masks on the CT, tables, previews,
growth plot and a 3D view; and the plan's visual outputs (:func:`write_plan_visuals`).

One file, no network access needed: CSS, the PNG images (base64), the slice viewer
(:mod:`hepatoplan.pipeline.slice_viewer`: the CT with the label map over it, axial, coronal,
sagittal) and a small WebGL viewer (``pipeline/assets/viewer.js``, no third-party library) with the
meshes embedded (quantised, decimated to a triangle budget) are all inlined. Any ``report`` dict
renders: known keys get a prominent verdict banner (any verdict text, e.g. "unverified: ...",
is shown as given), a summary and a warnings box, and every section is shown as tables (nested
dicts become sub-tables, lists of records become tables with one row per record).

Printed (``@media print`` in ``assets/report.css``: A4 pages), the interactive viewers are left
out and the QC montage (``qc_montage.png``, :mod:`hepatoplan.pipeline.montage`) stands for the
slice viewer; ``report.pdf`` is that print layout (:mod:`hepatoplan.pipeline.report_pdf`).

The viewer shows meshes in RAS millimetres: it opens on the anterior view (patient's right on
the screen's left, superior up) and has buttons for the six standard views and for the
"before"/"after" scenes of :func:`hepatoplan.pipeline.rendering.default_scenes`. A link can open another
state: ``report.html#view=superior&scene=before&hide=portal vein,hepatic veins&opacity=150``
(``opacity``: the liver-opacity slider, in % of the scene's opacities).
"""

from __future__ import annotations

import base64
import html
import json
import logging
import math
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from functools import cached_property, partial
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, NamedTuple, Sequence

import numpy as np

from hepatoplan.errors import HepatoplanError, InputError, InputFileError, NotComputableError

from .outputs import write_atomic
from .slice_viewer import script_json, slice_viewer_html
from .timing import stage, timed

if TYPE_CHECKING:
    from .meshing import Mesh

log = logging.getLogger(__name__)

#: Triangle budget of all meshes embedded in the 3D view together: a ceiling on the view's data
#: (~12 bytes per triangle in the page, ~5 MB at the ceiling), not a second decimation of a plan's
#: meshes. A plan's meshes are under it (IRCADb 01: 225-263 k triangles), so the view shows the
#: triangles of plan.glb and the STL files; 120 k before, decimated again, cost 0.28 s of CPU per
#: plan for 1.2-1.7 MB less in a 16 MB page (bench/RESULTS.md, output15).
DEFAULT_MAX_TRIANGLES = 400_000
PREVIEW_SIZE_PX = (1000, 800)  # the PNG previews' width, height
#: Smallest triangle budget of one structure (small tumours keep their shape).
MIN_TRIANGLES_PER_STRUCTURE = 600
REPORT_TITLE = "hepatoplan: liver resection plan"
#: Order of the report's top-level sections (others follow in their own order; inputs last).
SECTION_ORDER = ("assessment", "resection", "volumes_ml", "growth_outlook")
#: (towards the camera, view-up) per named view, RAS; as :data:`hepatoplan.pipeline.rendering.VIEWS`.
VIEWER_VIEWS = {
    "anterior": ((0, 1, 0), (0, 0, 1)),
    "posterior": ((0, -1, 0), (0, 0, 1)),
    "right": ((1, 0, 0), (0, 0, 1)),
    "left": ((-1, 0, 0), (0, 0, 1)),
    "superior": ((0, 0, 1), (0, 1, 0)),
    "inferior": ((0, 0, -1), (0, 1, 0)),
}
_UNIT_SUFFIXES = (("_ml", "mL"), ("_mm3", "mm³"), ("_mm", "mm"), ("_percent", "%"), ("_cm", "cm"), ("_kg", "kg"),
                  ("_m2", "m²"), ("_days", "days"), ("_weeks", "weeks"), ("_hu", "HU"))


def _asset(name: str) -> str:
    return resources.files(__package__).joinpath("assets", name).read_text(encoding="utf-8")


# ---- formatting --------------------------------------------------------------------------------

def _label(key: Any) -> str:
    """``flr_percent`` -> ``flr (%)``; keys keep their words, units move into brackets."""
    text = str(key)
    for suffix, unit in _UNIT_SUFFIXES:
        if text.endswith(suffix) and len(text) > len(suffix):
            return f"{text[: -len(suffix)].replace('_', ' ')} ({unit})"
    return text.replace("_", " ")


def _format_value(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (int, np.integer)):
        return f"{int(value):,}"
    if isinstance(value, (float, np.floating)):
        v = float(value)
        if not math.isfinite(v):
            return str(v)
        if v == 0:
            return "0"
        if abs(v) >= 100:
            return f"{v:,.1f}"
        if abs(v) >= 0.01:
            return f"{v:.2f}"
        return f"{v:.3g}"
    if isinstance(value, (list, tuple)) and all(not isinstance(v, (dict, list, tuple)) for v in value):
        return ", ".join(_format_value(v) for v in value) if value else "—"
    return str(value)


def _is_scalar(value: Any) -> bool:
    if isinstance(value, dict):
        return False
    if isinstance(value, (list, tuple)):
        return all(not isinstance(v, (dict, list, tuple)) for v in value)
    return True


def _cell(value: Any) -> str:
    cls = ' class="num"' if isinstance(value, (int, float, np.integer, np.floating)) \
        and not isinstance(value, bool) else ""
    return f"<td{cls}>{html.escape(_format_value(value))}</td>"


def _records_table(rows: Sequence[Mapping[str, Any]], *, key_column: str | None = None,
                   keys: Sequence[Any] | None = None) -> str:
    columns: list[str] = []
    for row in rows:
        for k in row:
            if k not in columns:
                columns.append(k)
    head = ([html.escape(key_column)] if key_column else []) + [html.escape(_label(c)) for c in columns]
    out = ["<table class='records'><thead><tr>", "".join(f"<th>{h}</th>" for h in head),
           "</tr></thead><tbody>"]
    for i, row in enumerate(rows):
        cells = [f"<th>{html.escape(str(keys[i]))}</th>"] if key_column and keys is not None else []
        for c in columns:
            v = row.get(c)
            cells.append(_cell(v) if _is_scalar(v) else
                         f"<td>{html.escape(json.dumps(v, default=str))}</td>")
        out.append("<tr>" + "".join(cells) + "</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def _render(value: Any, *, depth: int = 0) -> str:
    """Generic HTML of a JSON-like value: tables for dicts and lists of records."""
    heading = f"h{min(3 + depth, 6)}"
    if isinstance(value, dict):
        if value and all(isinstance(v, dict) and all(_is_scalar(x) for x in v.values())
                         for v in value.values()):
            return _records_table(list(value.values()), key_column="", keys=list(value))
        if len(value) >= 3 and all(str(k).isdigit() for k in value) \
                and all(_is_scalar(v) for v in value.values()):
            # numbered values (segments 1-8, tumours 1..n): one compact row
            head = "".join(f"<th>{html.escape(str(k))}</th>" for k in value)
            cells = "".join(_cell(v) for v in value.values())
            return (f"<table class='row'><thead><tr>{head}</tr></thead>"
                    f"<tbody><tr>{cells}</tr></tbody></table>")
        scalars = [(k, v) for k, v in value.items() if _is_scalar(v)]
        nested = [(k, v) for k, v in value.items() if not _is_scalar(v)]
        out = []
        if scalars:
            out.append("<table class='kv'><tbody>")
            for k, v in scalars:
                out.append(f"<tr><th title='{html.escape(str(k))}'>{html.escape(_label(k))}</th>"
                           f"{_cell(v)}</tr>")
            out.append("</tbody></table>")
        for k, v in nested:
            out.append(f"<{heading}>{html.escape(_label(k))}</{heading}>")
            out.append(_render(v, depth=depth + 1))
        return "".join(out) or "<p class='empty'>—</p>"
    if isinstance(value, (list, tuple)):
        if value and all(isinstance(v, dict) for v in value):
            if all(all(_is_scalar(x) for x in v.values()) for v in value):
                return _records_table(value)
            return "".join(f"<div class='item'>{_render(v, depth=depth + 1)}</div>" for v in value)
        if _is_scalar(value):
            return f"<p>{html.escape(_format_value(value))}</p>"
        return "<ol>" + "".join(f"<li>{_render(v, depth=depth + 1)}</li>" for v in value) + "</ol>"
    return f"<p>{html.escape(_format_value(value))}</p>"


def _get(report: Mapping, *path: str) -> Any:
    node: Any = report
    for key in path:
        if not isinstance(node, Mapping) or key not in node:
            return None
        node = node[key]
    return node


def _verdict_facts(report: Mapping) -> tuple[str, str, list[tuple[str, str]]]:
    """The verdict banner's kind (``adequate``, ``inadequate``, ``other``: any other text such as
    "unverified: ...", shown as given; ``unknown``), title and facts ``(label, text)``: the data of
    report.html's banner and report.pdf's."""
    assessment = _get(report, "assessment") or {}
    verdict = assessment.get("verdict") if isinstance(assessment, Mapping) else None
    flr = _get(report, "resection", "flr_percent")
    threshold = assessment.get("threshold_percent") if isinstance(assessment, Mapping) else None
    kind = (str(verdict).lower() if verdict in ("adequate", "inadequate") else
            "unknown" if verdict is None else "other")
    title = {"adequate": "Future liver remnant adequate",
             "inadequate": "Future liver remnant INADEQUATE",
             "other": f"Verdict: {verdict}", "unknown": "No FLR verdict"}[kind]
    facts = []

    def fact(label: str, value: Any, unit: str = "") -> None:
        if value is not None:
            facts.append((label, _format_value(value) + unit))

    fact("FLR", flr, " %")
    fact("required", threshold, " %")
    fact("sFLR", assessment.get("sflr_percent") if isinstance(assessment, Mapping) else None, " %")
    fact("remnant", _get(report, "resection", "remnant_ml"), " mL")
    fact("resected", _get(report, "resection", "resected_ml"), " mL")
    if isinstance(assessment, Mapping):
        if assessment.get("shortfall_ml"):
            fact("shortfall", assessment.get("shortfall_ml"), " mL")
        fact("parenchyma", assessment.get("parenchyma"))
        fact("FLR alone", assessment.get("flr_verdict"))
        for reason in assessment.get("unverified_reasons") or []:
            fact("unverified because", reason)
    tumours = _get(report, "resection", "tumours")
    if isinstance(tumours, list):
        left = [t for t in tumours if isinstance(t, Mapping) and t.get("resected") is False]
        if left:
            fact("tumours left in the remnant", ", ".join(str(t.get("id", "?")) for t in left))
    return kind, title, facts


def _verdict_html(report: Mapping) -> str:
    kind, title, facts = _verdict_facts(report)
    spans = "".join(f"<span class='fact'><b>{html.escape(label)}</b> {html.escape(text)}</span>"
                    for label, text in facts)
    return (f"<section class='verdict {kind}' id='verdict' data-verdict='{html.escape(kind)}'>"
            f"<div class='verdict-title'>{html.escape(title)}</div>"
            f"<div class='facts'>{spans}</div></section>")


def _summary_rows(report: Mapping) -> list[tuple[str, str]]:
    """The key numbers ``(label, text)``: what was planned, volumes, FLR, verdict (report.html's
    summary table and report.pdf's)."""
    rows = []

    def row(label: str, value: Any, unit: str = "") -> None:
        if value is not None and value != []:
            rows.append((label, _format_value(value) + unit))

    volumes = _get(report, "volumes_ml") or {}
    tumours = volumes.get("tumours") if isinstance(volumes, Mapping) else None
    row("resection", _get(report, "resection", "specs"))
    row("segments removed", _get(report, "resection", "segments_removed"))
    row("liver", volumes.get("liver") if isinstance(volumes, Mapping) else None, " mL")
    row("functional liver", volumes.get("functional_liver") if isinstance(volumes, Mapping) else None, " mL")
    if isinstance(tumours, Mapping) and tumours:
        rows.append(("tumours", f"{len(tumours)}, {_format_value(volumes.get('tumours_total'))} mL in total"))
    row("resected", _get(report, "resection", "resected_ml"), " mL")
    row("remnant (FLR)", _get(report, "resection", "remnant_ml"), " mL")
    row("FLR", _get(report, "resection", "flr_percent"), " %")
    row("required FLR", _get(report, "assessment", "threshold_percent"), " %")
    row("verdict", _get(report, "assessment", "verdict"))
    return rows


def _summary_html(report: Mapping) -> str:
    """The key numbers in one short table (:func:`_summary_rows`)."""
    rows = "".join(f"<tr><th>{html.escape(label)}</th><td>{html.escape(text)}</td></tr>"
                   for label, text in _summary_rows(report))
    if not rows:
        return ""
    return f"<section id='summary'><h2>Summary</h2><table class='kv'><tbody>{rows}</tbody></table></section>"


def _warnings_html(report: Mapping) -> str:
    warnings = report.get("warnings")
    if not warnings:
        return ""
    if not isinstance(warnings, (list, tuple)):
        warnings = [warnings]
    items = "".join(f"<li>{html.escape(str(w))}</li>" for w in warnings)
    return f"<section class='warnings'><h2>Warnings</h2><ul>{items}</ul></section>"


def _png_bytes(path: Path) -> bytes:
    path = Path(path)
    if not path.is_file():
        raise InputFileError(f"image for the HTML report not found: {path}")
    data = path.read_bytes()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise InputError(f"{path} is not a PNG file")
    return data


def _png_data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(_png_bytes(path)).decode("ascii")


#: JPEG quality of the 3D previews on report.pdf's pages (4:4:4, no chroma subsampling): the PDF
#: holds a JPEG as it is (DCTDecode), where a PNG's pixels are deflated again; the shaded renders lose
#: nothing visible at 90. The PNG files and report.html keep the PNGs (the QC montage's thin outlines
#: and the growth plot stay PNG in the PDF too).
PRINT_JPEG_QUALITY = 90


def _jpeg_bytes(image: Path | np.ndarray) -> bytes:
    """A PNG file, or RGB pixels (uint8, (height, width, 3); the preview's, without decoding its PNG
    again: 3 of 14 ms per preview), as JPEG (:data:`PRINT_JPEG_QUALITY`), for report.pdf."""
    from io import BytesIO

    from PIL import Image

    buffer = BytesIO()
    with (Image.fromarray(image) if isinstance(image, np.ndarray) else Image.open(BytesIO(_png_bytes(image)))) as pil:
        pil.convert("RGB").save(buffer, "JPEG", quality=PRINT_JPEG_QUALITY, subsampling=0)
    return buffer.getvalue()


# ---- 3D view data ------------------------------------------------------------------------------

def _budgets(meshes: Mapping[str, Mesh], max_triangles: int) -> dict[str, int]:
    total = sum(len(m.faces) for m in meshes.values())
    if total <= max_triangles:
        return {n: len(m.faces) for n, m in meshes.items()}
    return {n: max(MIN_TRIANGLES_PER_STRUCTURE, int(max_triangles * len(m.faces) / total))
            for n, m in meshes.items()}


def viewer_data(
    meshes: Mapping[str, Mesh],
    *,
    colours: Mapping[str, Sequence[float]] | None = None,
    scenes: Mapping[str, Mapping[str, float]] | None = None,
    max_triangles: int = DEFAULT_MAX_TRIANGLES,
) -> dict:
    """The JSON-able data of the embedded 3D view (meshes quantised to uint16, base64).

    Parameters
    ----------
    meshes : mapping of str to Mesh
        RAS world mm.
    colours : mapping of str to (r, g, b), optional
        Floats in [0, 1]; default :func:`hepatoplan.pipeline.labels.default_colours`.
    scenes : mapping, optional
        Scene name -> {structure: opacity}; default :func:`hepatoplan.pipeline.rendering.default_scenes`.
        The viewer opens on the ``after`` scene when there is one, else ``before``.
    max_triangles : int
        Triangle budget of all structures together.

    Returns
    -------
    dict
    """
    from .labels import PARENCHYMA_KINDS, default_colours, structure_kind
    from .meshing import decimate_mesh
    from .rendering import default_scenes

    colours = dict(default_colours(list(meshes))) | dict(colours or {})
    scenes = dict(scenes) if scenes is not None else default_scenes(list(meshes))
    initial = scenes.get("after") or scenes.get("before") or {n: 1.0 for n in meshes}
    budgets = _budgets(meshes, max_triangles)
    all_opacity = {n: o for scene in scenes.values() for n, o in scene.items()}
    structures = []
    lo_all, hi_all = np.full(3, np.inf), np.full(3, -np.inf)
    for name, mesh in meshes.items():
        small = decimate_mesh(mesh, max_triangles=max(4, budgets[name]))
        v = np.asarray(small.vertices_mm, np.float64)
        lo, hi = v.min(axis=0), v.max(axis=0)
        lo_all, hi_all = np.minimum(lo_all, lo), np.maximum(hi_all, hi)
        extent = np.where(hi > lo, hi - lo, 1.0)
        q = np.round((v - lo) / extent * 65535).astype("<u2")
        index_type = "u16" if len(v) <= 65535 else "u32"
        idx = small.faces.astype("<u2" if index_type == "u16" else "<u4")
        structures.append({
            "name": name,
            "colour": [round(float(c), 4) for c in colours[name]],
            "opacity": float(initial.get(name, all_opacity.get(name, 1.0))),
            "visible": name in initial,
            "parenchyma": structure_kind(name) in PARENCHYMA_KINDS,
            "lo_mm": lo.round(4).tolist(),
            "hi_mm": (lo + extent).round(4).tolist(),
            "positions_b64": base64.b64encode(q.tobytes()).decode("ascii"),
            "index_type": index_type,
            "indices_b64": base64.b64encode(idx.tobytes()).decode("ascii"),
            "n_vertices": int(len(v)),
            "n_triangles": int(len(idx)),
        })
    return {
        "coordinates": "RAS world millimetres",
        "bbox_lo_mm": lo_all.round(3).tolist(),
        "bbox_hi_mm": hi_all.round(3).tolist(),
        "background": [1.0, 1.0, 1.0],
        "views": {k: [list(a), list(b)] for k, (a, b) in VIEWER_VIEWS.items()},
        "initial_view": "anterior",
        "scenes": {k: dict(v) for k, v in scenes.items()},
        "structures": structures,
    }


def _viewer_html(data: dict) -> str:
    payload = script_json(data)
    view_buttons = "".join(f"<button type='button' data-view='{v}'>{v}</button>"
                           for v in VIEWER_VIEWS)
    scene_buttons = "".join(f"<button type='button' data-scene='{html.escape(s)}'>"
                            f"{html.escape(s)}</button>" for s in data["scenes"])
    return (
        "<section id='view3d'><h2>3D view</h2>"
        "<div id='hp-viewer' data-status='loading'>"
        "<div class='hp-stage'><canvas class='hp-gl'></canvas>"
        "<canvas class='hp-axes' width='96' height='96'></canvas>"
        "<p class='hp-viewer-message'></p></div>"
        "<div class='hp-side'><div class='hp-buttons'><span>view</span>" + view_buttons + "</div>"
        "<div class='hp-buttons'><span>scene</span>" + scene_buttons + "</div>"
        "<label class='hp-slider'>liver opacity <input type='range' class='hp-opacity' "
        "min='0' max='200' value='100'></label>"
        "<div class='hp-structures'></div>"
        "<p class='hint'>Drag to rotate, wheel to zoom, shift-drag to pan. Coordinates: "
        "patient RAS (axes: R right, A anterior, S superior).</p></div></div>"
        f"<script type='application/json' id='hp-mesh-data'>{payload}</script>"
        f"<script>{_asset('viewer.js')}</script></section>")


# ---- the page ----------------------------------------------------------------------------------

def _figures_html(previews: Sequence[str | Path], growth_plot_png: str | Path | None) -> str:
    """The preview gallery and the growth-outlook plot (empty when there are none)."""
    parts = []
    if previews:
        parts.append("<section id='previews'><h2>Previews</h2><div class='gallery'>")
        for p in previews:
            caption = Path(p).stem.replace("preview_", "").replace("_", " ")
            parts.append(f"<figure><img src='{_png_data_uri(Path(p))}' alt='{html.escape(caption)}'>"
                         f"<figcaption>{html.escape(caption)}</figcaption></figure>")
        parts.append("</div></section>")
    if growth_plot_png is not None:
        parts.append("<section id='growth'><h2>Growth outlook</h2>"
                     f"<figure><img src='{_png_data_uri(Path(growth_plot_png))}' "
                     "alt='growth outlook plot'></figure></section>")
    return "".join(parts)


def _data_sections_html(report: Mapping[str, Any]) -> str:
    """Every section of ``report`` as tables: the known ones in order, others, then the inputs."""
    keys = [k for k in SECTION_ORDER if k in report]
    keys += [k for k in report if k not in keys and k not in ("warnings", "inputs")]
    keys += [k for k in ("inputs",) if k in report]
    return "".join(f"<section class='data' id='section-{html.escape(str(key))}'>"
                   f"<h2>{html.escape(_label(key))}</h2>{_render(report[key])}</section>" for key in keys)


def write_report_html(
    report: Mapping[str, Any],
    *,
    out_path: str | Path,
    previews: Sequence[str | Path] = (),
    meshes: Mapping[str, Mesh] | None = None,
    growth_plot_png: str | Path | None = None,
    slice_viewer: Mapping[str, Any] | None = None,
    montage_png: str | Path | None = None,
    title: str = REPORT_TITLE,
) -> Path:
    """Write the self-contained HTML report.

    Sections: verdict, summary, warnings, the slice viewer, the QC montage, the 3D view,
    previews, growth outlook, then every section of ``report`` as tables. Printed, the two
    interactive viewers are left out (the print stylesheet: the pages of report.pdf,
    :mod:`hepatoplan.pipeline.report_pdf`).

    Parameters
    ----------
    report : mapping
        The plan's ``report.json`` content (any JSON-like dict).
    out_path : str or Path
        Output file (``report.html``), written atomically.
    previews : sequence of path
        PNG files to embed (e.g. from :func:`hepatoplan.pipeline.rendering.render_previews`), in order.
    meshes : mapping of str to Mesh, optional
        Structures for the interactive 3D view (RAS mm; :func:`viewer_data` with its default
        colours, scenes and triangle budget); no 3D view without them.
    growth_plot_png : path, optional
        A growth-outlook plot to embed.
    slice_viewer : mapping, optional
        :func:`hepatoplan.pipeline.slice_viewer.slice_viewer_data` of the plan; no slice viewer
        without it.
    montage_png : path, optional
        The QC montage to embed.
    title : str
        Page title and heading.

    Returns
    -------
    Path

    Raises
    ------
    InputError
        If ``report`` is not a mapping or an image is not a PNG.
    InputFileError
        If an image file is missing.
    """
    if not isinstance(report, Mapping):
        raise InputError(f"report must be a mapping (the report.json content), got {type(report)}")
    views = _ReportViews.of(previews=previews, growth_plot_png=growth_plot_png, montage_png=montage_png)
    views = replace(views, slice_viewer=slice_viewer_html(slice_viewer) if slice_viewer else "",
                    mesh_view=_viewer_html(viewer_data(meshes)) if meshes else "")
    return _write_page(report, Path(out_path), views, title=title)


@dataclass(frozen=True)
class _ReportViews:
    """The report's figures and viewers as HTML, made once for ``report.html`` and its print
    layout (each image read and base64-encoded once)."""

    slice_viewer: str = ""
    montage: str = ""
    mesh_view: str = ""
    figures: str = ""  # previews and growth outlook

    @classmethod
    def of(cls, *, previews: Sequence[str | Path] = (), growth_plot_png: str | Path | None = None,
           montage_png: str | Path | None = None) -> "_ReportViews":
        montage = "" if montage_png is None else (
            "<section id='montage'><h2>QC montage: the plan's outlines on the image</h2>"
            f"<figure><img src='{_png_data_uri(Path(montage_png))}' alt='QC montage'>"
            "<figcaption>Axial slices through the liver and one coronal slice: liver border, "
            "segment boundaries, the cut and the tumours (qc_montage.png).</figcaption></figure></section>")
        return cls(montage=montage, figures=_figures_html(previews, growth_plot_png))


def _write_page(report: Mapping[str, Any], out_path: Path, views: _ReportViews, *, title: str) -> Path:
    """The page: verdict, summary, warnings, ``views`` in their order, then the report's tables."""
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        "<meta name='viewport' content='width=device-width, initial-scale=1'>",
        f"<title>{html.escape(title)}</title><style>{_asset('report.css')}</style></head><body>",
        f"<header><h1>{html.escape(title)}</h1></header><main>",
        _verdict_html(report),
        _summary_html(report),
        _warnings_html(report),
        views.slice_viewer,
        views.montage,
        views.mesh_view,
        views.figures,
        _data_sections_html(report),
        "</main><footer>Generated by hepatoplan. For research use; not a medical device.</footer></body></html>",
    ]
    out_path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(out_path, "".join(parts))
    log.info("wrote %s (%.1f kB)", out_path, out_path.stat().st_size / 1024)
    return out_path


class StartedAhead(NamedTuple):
    """Work for :func:`write_plan_visuals` that its caller started early: ``boxes``, the
    :func:`~hepatoplan.pipeline.labels.label_boxes` of the same labels; ``meshes``, a Future of
    :func:`plan_meshes` on the same labels and vessels (``plan`` meshes while it analyses the
    vessels; report.pdf's pages are then laid out while the previews render); ``first``, a Future of
    :func:`meshes_before_resection` (the "before" scene is rendered from them while ``meshes`` makes
    the remnant and the resected part); ``pdf``, a :class:`~hepatoplan.pipeline.helper_process.PlanHelper`
    started early (its imports done meanwhile)."""

    boxes: dict[int, tuple[slice, slice, slice]] | None = None
    meshes: Future | None = None
    first: Future | None = None
    pdf: Any = None
    label_files: Future | None = None  # of :func:`write_label_files` of the same labels and vessels
    previews: bool = True  # False: the label files, report.html and no meshes, previews or PDF (``--no-preview``)


def write_plan_visuals(
    out_dir: str | Path,
    *,
    report: Mapping[str, Any],
    labels: np.ndarray,
    affine_ras: np.ndarray,
    vessels: Mapping[str, np.ndarray] | None = None,
    ct: np.ndarray | None = None,
    modality: str = "CT",
    dicom_seg: DicomSegSource | None = None,
    growth_plot_png: str | Path | None = None,
    meshes_and_previews: bool | StartedAhead = True,
) -> dict[str, list[Path]]:
    """Write every visual/label output of one plan into ``out_dir`` (one call for ``plan``).

    Files: ``labels.ctbl`` (colour table of ``labels.nii.gz``), ``labels.seg.nrrd`` (vessels as
    extra layers), ``labels_seg.dcm`` when ``dicom_seg`` is given; with ``ct``,
    ``qc_montage.png`` and the slice viewer in ``report.html``; unless ``meshes_and_previews``
    is false, ``plan.glb``, ``meshes/*.stl|obj``, ``preview_{before,after}_{anterior,superior}.png``
    and ``report.pdf`` (the report's print layout, :mod:`hepatoplan.pipeline.report_pdf`); always
    ``report.html``.

    Parameters
    ----------
    out_dir : str or Path
        Output folder (created if needed).
    report : mapping
        The ``report.json`` content.
    labels : ndarray of int, shape (X, Y, Z)
        The plan's label map, canonical RAS grid.
    affine_ras : ndarray, shape (4, 4)
        Voxel index -> RAS world mm of ``labels``.
    vessels : mapping of str to bool ndarray, optional
        E.g. ``{"portal vein": ..., "hepatic veins": ...}`` on the labels' grid.
    ct : ndarray, shape (X, Y, Z), optional
        The CT (HU) or MR on the labels' grid: the slice viewer and the QC montage need it.
    modality : str
        ``CT`` or ``MR`` (how the slice viewer and the montage window the image).
    dicom_seg : DicomSegSource, optional
        The CT series' files when the input was DICOM (the labels must be on its grid), and the
        DICOM-SEG's extra segments.
    growth_plot_png : path, optional
        Embedded in the HTML report.
    meshes_and_previews : bool or StartedAhead
        False skips meshes, GLB/STL/OBJ, PNG rendering (``PREVIEW_SIZE_PX``) and the PDF
        (``--no-preview``); a :class:`StartedAhead` makes them with the work the caller started
        (with ``previews=False``, only its label files are read).

    Returns
    -------
    dict of str to list of Path
        Keys ``labels``, ``dicom_seg``, ``meshes``, ``previews``, ``montage``, ``pdf``, ``report``.

    Notes
    -----
    These are reported in ``report["warnings"]`` instead of failing the plan (the dict passed in
    is modified, so ``report.json`` written after this call carries them too): UIDs the source
    series lacks (blanked by an anonymiser, as in the TotalSegmentator example series: the
    DICOM-SEG carries UIDs derived from the series' content), a DICOM-SEG or a PDF that cannot be
    written.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ahead = meshes_and_previews if isinstance(meshes_and_previews, StartedAhead) else StartedAhead()
    meshes_and_previews = bool(meshes_and_previews) and ahead.previews
    if meshes_and_previews:
        from .rendering import start_offscreen_check

        start_offscreen_check()  # the rendering probe runs while labels and meshes are written
    plan = _PlanLabels(out_dir, labels, affine_ras, dict(vessels or {}), ahead.boxes)
    written: dict[str, list[Path]] = {"labels": [], "dicom_seg": [], "meshes": [], "previews": [],
                                      "montage": [], "pdf": []}
    # a worker makes the QC montage (the PDF waits for it), label files and slice viewer (mostly without the GIL)
    with ThreadPoolExecutor(max_workers=1) as worker, ThreadPoolExecutor(max_workers=1) as pdf_thread, \
            ThreadPoolExecutor(max_workers=1) as mesh_writer:
        montage = None if ct is None else worker.submit(_write_montage, plan, ct, modality)
        label_files = ahead.label_files or worker.submit(_write_label_files, plan)
        slice_view = None if ct is None else worker.submit(_slice_viewer_html, plan, ct, modality, report)
        if dicom_seg is not None and dicom_seg.files:
            written["dicom_seg"] = [p for p in [_write_dicom_seg(plan, dicom_seg, report)] if p]
        mesh_files, view, jpegs = None, None, {}
        # report.pdf's pages laid out by its helper process while the montage is made and the previews render
        pdf = meshes_and_previews and pdf_thread.submit(_lay_out_pdf, report, montage=montage, meshes=ahead.meshes,
                                                        out_dir=out_dir, growth_plot_png=growth_plot_png,
                                                        helper=ahead.pdf)
        if meshes_and_previews:
            mesh_files, written["previews"], view, jpegs = _meshes_and_previews(plan, ahead, worker, mesh_writer)
        with stage("report"):
            written["montage"] = [] if montage is None else [montage.result()]
            views = _ReportViews.of(previews=written["previews"], growth_plot_png=growth_plot_png,
                                    montage_png=written["montage"][0] if written["montage"] else None)
            written["meshes"] = [] if mesh_files is None else mesh_files.result()
            views = replace(views, mesh_view="" if view is None else _viewer_html(view.result()),
                            slice_viewer="" if slice_view is None else slice_view.result())
            written["pdf"], written["report"] = _write_reports(report, out_dir, views, pdf_thread=pdf_thread,
                                                               pdf=pdf, written=written, jpegs=jpegs,
                                                               growth_plot_png=growth_plot_png)
        written["labels"] = label_files.result()
    return written


def _write_montage(plan: _PlanLabels, ct: np.ndarray, modality: str) -> Path:
    from .montage import write_qc_montage

    t = time.perf_counter()
    montage = write_qc_montage(plan.out_dir / "qc_montage.png", ct, plan.labels, affine_ras=plan.affine_ras,
                               modality=modality, boxes=plan.boxes)
    log.info("QC montage: %.1f s", time.perf_counter() - t)
    return montage


def _slice_viewer_html(plan: _PlanLabels, ct: np.ndarray, modality: str, report: Mapping[str, Any]) -> str:
    from .slice_viewer import VESSEL_BITS, slice_viewer_data

    t = time.perf_counter()
    data = slice_viewer_data(ct, plan.labels, affine_ras=plan.affine_ras, report=report, modality=modality,
                             vessels={k: v for k, v in plan.vessels.items() if k in VESSEL_BITS}, boxes=plan.boxes)
    log.info("slice viewer data: %.1f s", time.perf_counter() - t)
    return slice_viewer_html(data)


#: The previews' views (render_previews' default), each scene's in this order: their slots on report.pdf's pages.
PREVIEW_VIEWS = ("anterior", "superior")


def _lay_out_pdf(report: Mapping[str, Any], *, montage: Future | None, meshes: Future | None, out_dir: Path,
                 growth_plot_png: str | Path | None, helper=None):
    """report.pdf's pages laid out by ``helper``, a :class:`~hepatoplan.pipeline.helper_process.PlanHelper`
    (a child process; ``plan`` starts it at its beginning, fpdf2 imported there meanwhile; else one
    started now), with the places of the previews to come, named after the scenes of ``meshes`` (a
    Future of the plan's meshes); ``None`` without it (then :func:`_write_pdf` lays the pages out)."""
    if meshes is None:
        return None
    from .helper_process import PlanHelper
    from .rendering import default_scenes

    helper = helper or PlanHelper()
    try:
        previews = [out_dir / f"preview_{scene}_{view}.png" for scene in default_scenes(list(meshes.result()))
                    for view in PREVIEW_VIEWS]
        return helper.lay_out(report, montage_png=None if montage is None else montage.result(), previews=previews,
                              preview_size_px=PREVIEW_SIZE_PX, growth_plot_png=growth_plot_png)
    except BaseException:
        helper.close()
        raise


def _write_reports(report: Mapping[str, Any], out_dir: Path, views: _ReportViews, *, pdf_thread: ThreadPoolExecutor,
                   pdf: Future | None, written: Mapping[str, list[Path]], jpegs: Mapping[Path, bytes],
                   growth_plot_png: str | Path | None) -> tuple[list[Path], list[Path]]:
    """report.pdf (by ``pdf_thread``, from ``pdf``: :func:`_lay_out_pdf`'s Future) and report.html written
    side by side; report.html again, with the PDF's warning, when the PDF cannot be written (rare). Returns
    the ``pdf`` and ``report`` files."""
    page = partial(_write_page, report, out_dir / "report.html", views, title=REPORT_TITLE)
    if not pdf:
        return [], [page()]
    pdf_file = pdf_thread.submit(_write_pdf, pdf, out_dir / "report.pdf", report, written, jpegs,
                                 growth_plot_png=growth_plot_png)
    html_file = page()
    try:
        return [pdf_file.result()], [html_file]
    except HepatoplanError as exc:  # the warning added here, where the report is read
        _pdf_warning(report, exc)
        return [], [page()]


def _write_pdf(layout: Future, path: Path, report: Mapping[str, Any], written: Mapping[str, list[Path]],
               jpegs: Mapping[Path, bytes], *, growth_plot_png: str | Path | None) -> Path:
    """Write report.pdf: the pages ``layout`` had laid out ahead (a :class:`~.helper_process.PlanHelper`),
    the previews' JPEGs put in their places; laid out here when the previews are not those it expected
    or the helper failed. Does not change ``report``.

    Raises
    ------
    HepatoplanError
        When it cannot be written (a preview not found, the helper could not lay out or write the pages, a
        full disk, fpdf2's error).
    """
    jpegs = {p: jpegs.get(p) or _jpeg_bytes(p) for p in written["previews"]}
    try:
        pages = layout.result()
        if pages is not None and pages.previews == written["previews"]:
            return pages.write(path, jpegs)
        if pages is not None:
            pages.close()
    except (OSError, EOFError) as exc:  # the helper ended
        log.warning("report.pdf's helper process failed (%s): laying the pages out in this one", exc)
    from fpdf.errors import FPDFException

    from .report_pdf import PdfLayout

    try:
        with PdfLayout(report, montage_png=(written["montage"] or [None])[0], previews=written["previews"],
                       preview_size_px=PREVIEW_SIZE_PX, growth_plot_png=growth_plot_png) as pages:
            return pages.write(path, jpegs)
    except (OSError, FPDFException) as exc:
        raise NotComputableError(str(exc)) from exc


def _pdf_warning(report: Mapping[str, Any], exc: Exception) -> None:
    """A PDF that cannot be written is a warning in the report (``report.html`` printed from a
    browser gives the same pages), never a failed plan."""
    message = f"report.pdf not written: {exc}"
    log.warning("%s", message)
    if isinstance(report, dict):
        report.setdefault("warnings", []).append(message)


@dataclass(frozen=True)
class DicomSegSource:
    """What ``labels_seg.dcm`` is made from besides the label map: the source series' files and
    more (overlapping) segments, e.g. the regions the SR's measurements reference
    (:func:`hepatoplan.pipeline.dicom_sr.seg_extra_structures`)."""

    files: Sequence[str | Path]
    extra_structures: Mapping[str, np.ndarray] = field(default_factory=dict)


@dataclass(frozen=True)
class _PlanLabels:
    """What every visual of one plan is made from: the label map, its grid, vessels and the labels'
    boxes (:func:`~hepatoplan.pipeline.labels.label_boxes`: ``given_boxes``, else computed when first read)."""

    out_dir: Path
    labels: np.ndarray
    affine_ras: np.ndarray
    vessels: dict[str, np.ndarray]
    given_boxes: dict[int, tuple[slice, slice, slice]] | None = None

    @cached_property
    def boxes(self) -> dict[int, tuple[slice, slice, slice]]:
        from .labels import label_boxes

        return label_boxes(self.labels) if self.given_boxes is None else self.given_boxes


def write_label_files(out_dir: Path, labels: np.ndarray, *, affine_ras: np.ndarray,
                      vessels: Callable[[], Mapping[str, np.ndarray]]) -> list[Path]:
    """``labels.ctbl`` and ``labels.seg.nrrd`` into ``out_dir``, as :func:`write_plan_visuals` writes them;
    ``vessels`` gives the vessel masks (called here). ``plan`` starts it as soon as the label map is known
    (:attr:`StartedAhead.label_files`), beside the NIfTI label files and the vascular analysis."""
    return _write_label_files(_PlanLabels(out_dir, labels, affine_ras, dict(vessels())))


def _write_label_files(plan: _PlanLabels) -> list[Path]:
    """``labels.ctbl`` and ``labels.seg.nrrd`` (vessels as extra layers)."""
    from .seg_nrrd import write_colour_table, write_seg_nrrd

    return [write_colour_table(plan.labels, path=plan.out_dir / "labels.ctbl", boxes=plan.boxes),
            write_seg_nrrd(plan.labels, affine_ras=plan.affine_ras,
                           path=plan.out_dir / "labels.seg.nrrd", extra_structures=plan.vessels,
                           boxes=plan.boxes)]


@timed("dicom_seg")
def _write_dicom_seg(plan: _PlanLabels, source: DicomSegSource, report: Mapping[str, Any]) -> Path | None:
    """``labels_seg.dcm`` (vessels and ``source.extra_structures`` as more segments). UIDs the source
    series lacks are derived (a warning each in ``report["warnings"]``); a DICOM-SEG that cannot
    be made is a warning too, never a failed plan: ``None`` then."""
    from .dicom_seg import write_dicom_seg

    warnings = report.setdefault("warnings", []) if isinstance(report, dict) else []
    try:
        return write_dicom_seg(plan.labels, affine_ras=plan.affine_ras, source_dicom_files=source.files,
                               path=plan.out_dir / "labels_seg.dcm",
                               extra_structures={**plan.vessels, **source.extra_structures}, warnings=warnings)
    except (HepatoplanError, ValueError) as exc:  # highdicom refuses what it cannot encode with ValueError
        message = f"labels_seg.dcm: not written: {exc}"
        log.warning("%s", message)
        warnings.append(message)
        return None


def plan_meshes(labels: np.ndarray, *, boxes: dict[int, tuple[slice, slice, slice]], affine_ras: np.ndarray,
                vessels: Mapping[str, np.ndarray] | Future | None = None,
                made: Future | None = None) -> dict[str, Mesh]:
    """The meshes :func:`write_plan_visuals` draws and writes: every structure of ``labels``
    (``boxes``: their :func:`~hepatoplan.pipeline.labels.label_boxes`) and the ``vessels`` (masks,
    or a Future of their :func:`~hepatoplan.pipeline.meshing.structure_meshes` started earlier),
    last; those of ``made`` (a Future of :func:`meshes_before_resection`) are taken from it; pure
    computation, no file."""
    from .labels import structures_from_labels
    from .meshing import structure_meshes

    t = time.perf_counter()
    ahead = isinstance(vessels, Future)
    structures = structures_from_labels(labels, vessels=None if ahead else dict(vessels or {}), boxes=boxes)
    done = {} if made is None else made.result()
    meshes = structure_meshes(structures, affine_ras=affine_ras, names=[n for n in structures if n not in done])
    meshes = {name: done[name] if name in done else meshes[name] for name in structures
              if name in done or name in meshes}
    if ahead:
        meshes.update(vessels.result())
    log.info("meshes: %.1f s", time.perf_counter() - t)
    return meshes


def meshes_before_resection(labels_without_resection: Callable[[], np.ndarray], *, affine_ras: np.ndarray,
                            vessels: Future | None = None) -> dict[str, Mesh]:
    """The meshes of the "before" scene that the resection does not change: the Couinaud segments
    (their kept and resected parts together) and the tumours of the label map without the
    resection (``labels_without_resection`` makes it, in this thread), and the vessels (a Future
    of their meshes); the same meshes :func:`plan_meshes` makes of them from the plan's label map
    (the same voxels in the same boxes)."""
    from .labels import label_boxes, structure_kind, structures_from_labels
    from .meshing import structure_meshes

    labels = labels_without_resection()
    structures = structures_from_labels(labels, boxes=label_boxes(labels))
    meshes = structure_meshes(structures, affine_ras=affine_ras,
                              names=[n for n in structures if structure_kind(n) in ("segment", "tumour")])
    return meshes | ({} if vessels is None else vessels.result())


def _framing(meshes: Mapping[str, Mesh]) -> dict[str, Mesh]:
    """The meshes every preview frames: with the Couinaud segments drawn, those the resection does not
    change (segments, tumours, vessels; the remnant and the resected part are the segments' voxels, their
    smoothed surfaces reach at most 0.6 mm beyond the segments' on IRCADb 01-12), so that the "before"
    scene can be rendered before the resection's meshes exist; else all."""
    from .labels import structure_kind

    if not any(structure_kind(n) == "segment" for n in meshes):
        return dict(meshes)
    return {n: m for n, m in meshes.items() if structure_kind(n) not in ("remnant", "resected")}


@timed("previews")
def _meshes_and_previews(plan: _PlanLabels, ahead: StartedAhead, worker: ThreadPoolExecutor,
                         mesh_writer: ThreadPoolExecutor):
    """Meshes of every structure (``ahead.meshes``: a Future of them started earlier, waited for
    here) and the PNG previews, framed by :func:`_framing`; returns ``(a Future of the mesh files (written
    by ``mesh_writer`` while the "after" scene renders) or None, preview files, a Future of the meshes'
    viewer_data or None, report.pdf's JPEG of each preview by path)``.

    With ``ahead.first`` holding the segments' meshes (made before the resection was known: the
    "before" scene), that scene is rendered while the remnant and the resected part are meshed. The
    3D view's data is made by ``worker`` while the previews render, and each preview's JPEG by the
    thread writing the PNGs while the next one renders (on the main thread after the renders, they
    were 0.06-0.10 s of CPU on the critical path; bench/RESULTS.md, output15)."""
    from .labels import structure_kind
    from .rendering import default_scenes, render_previews

    jpegs: dict[Path, bytes] = {}
    render = partial(render_previews, out_dir=plan.out_dir, size_px=PREVIEW_SIZE_PX,
                     on_written=lambda path, rgb: jpegs.__setitem__(path, _jpeg_bytes(rgb)))
    t = time.perf_counter()
    first = {} if ahead.first is None else ahead.first.result()
    early = any(structure_kind(n) == "segment" for n in first)  # the "before" scene is all there
    # their STL and OBJ files are written meanwhile: after the last render, only the resection's and plan.glb are left
    ahead_files = mesh_writer.submit(_write_mesh_files, plan, first, formats=("stl", "obj")) if early else None
    previews = render(first, scenes={"before": default_scenes(list(first))["before"]},
                      framing=_framing(first)) if early else []
    if ahead.meshes is None:
        meshes = plan_meshes(plan.labels, boxes=plan.boxes, affine_ras=plan.affine_ras, vessels=plan.vessels)
    else:
        meshes = ahead.meshes.result()
    view = worker.submit(viewer_data, meshes) if meshes else None
    files = mesh_writer.submit(_write_mesh_files, plan, meshes, ahead=ahead_files, written=first) if meshes else None
    if meshes:
        scenes = default_scenes(list(meshes))
        previews += render(meshes, scenes={k: v for k, v in scenes.items() if not (early and k == "before")},
                           framing=_framing(meshes))
    log.info("meshes and previews: %.1f s", time.perf_counter() - t)
    return files, previews, view, jpegs


def _write_mesh_files(plan: _PlanLabels, meshes: Mapping[str, Mesh], *, formats=("glb", "stl", "obj"),
                      ahead: Future | None = None, written: Mapping[str, Mesh] | None = None) -> list[Path]:
    """``plan.glb`` and ``meshes/*.stl|obj`` (:func:`~hepatoplan.pipeline.mesh_files.write_meshes`); with
    ``ahead`` (an earlier call's Future: its error raised here), not again the STL and OBJ files of ``written``,
    which it wrote."""
    from .mesh_files import write_meshes

    if ahead is not None:
        ahead.result()
    t = time.perf_counter()
    files = write_meshes(meshes, plan.out_dir, formats=formats, written=written if ahead is not None else None)
    log.info("mesh files: %.1f s", time.perf_counter() - t)
    return files
