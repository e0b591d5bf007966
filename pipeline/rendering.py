"""PNG previews of the plan, rendered offscreen with vtk.

:func:`render_previews` draws ``preview_<scene>_<view>.png``: the "before" and "after" scenes of
:func:`default_scenes` seen from the front and from above, one camera framing for all, with
orientation letters and a legend. Meshes are RAS world millimetres
(:class:`hepatoplan.pipeline.meshing.Mesh`).

Rendering is offscreen (EGL with Mesa's software renderer on headless machines). A vtk render
window without a working OpenGL can crash the interpreter, so :func:`check_offscreen_rendering`
first tries it in a child process (the render probe, started early by
:func:`start_offscreen_check`); a failure becomes a clear :class:`NotComputableError`.

The probe's answer is kept per machine (:func:`probe_cache_path`, ``$XDG_CACHE_HOME/hepatoplan``) with
what decides it: the Python executable, vtk's version, the OpenGL/EGL/X environment variables, and the
size and modification time of every shared library the probe loaded, of ``/etc/ld.so.cache`` (a library
installed or removed) and of the EGL vendor files and ``/dev/dri``; when any differs the probe runs
again (off Linux, without ``/proc/self/maps`` to list the libraries, nothing is kept). A process's first render on a cached answer leaves a marker file while it runs: if that render
crashes the interpreter (the plan ends with a fatal signal and, through :mod:`faulthandler`, the
traceback, its output folder not written), the next check finds the marker of a dead process, drops the
answer and probes again, which then fails with the error above.
"""

from __future__ import annotations

import faulthandler
import hashlib
import json
import logging
import os
import subprocess
import sys
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Callable, Mapping, Sequence

import numpy as np

from hepatoplan.errors import HepatoplanError, InputError, NotComputableError

from .labels import default_colours, structure_kind
from .meshing import Mesh, arrays_polydata, decimate_mesh, vtk_classes as meshing_vtk_classes
from .outputs import atomic_file
from .png import write_png

log = logging.getLogger(__name__)

#: Opacity of liver parenchyma in the previews (so that tumours and vessels inside show).
PARENCHYMA_OPACITY = 0.45
#: Opacity of the resected part in the "after" previews (ghosted).
RESECTED_OPACITY = 0.2
#: Camera directions (from the focal point towards the camera, RAS) and view-up vectors.
VIEWS = {
    "anterior": ((0.0, 1.0, 0.0), (0.0, 0.0, 1.0)),
    "superior": ((0.0, 0.0, 1.0), (0.0, 1.0, 0.0)),
}
_RAS_LETTERS = (("R", "L"), ("A", "P"), ("S", "I"))
#: Tumours listed one per legend line up to this many (each has its own colour); more share one line.
LEGEND_MAX_TUMOURS = 8


def default_scenes(names: Sequence[str]) -> dict[str, dict[str, float]]:
    """Which structures each preview scene shows, with their opacities.

    ``before``: the Couinaud segments (else the liver, else remnant and resected together) at
    :data:`PARENCHYMA_OPACITY`, plus tumours and vessels, opaque. ``after`` (only when a
    ``remnant`` mesh exists): the remnant at :data:`PARENCHYMA_OPACITY`, the resected part ghosted
    at :data:`RESECTED_OPACITY` (so tumours and their margins are seen inside it), plus tumours
    and vessels.

    Parameters
    ----------
    names : sequence of str
        Available mesh names.

    Returns
    -------
    dict of str to dict of str to float
        Scene name -> {structure name: opacity}.
    """
    kinds = {n: structure_kind(n) for n in names}
    solid = {n: 1.0 for n, k in kinds.items() if k in ("tumour", "other")}
    segments = [n for n, k in kinds.items() if k == "segment"]
    if segments:
        parenchyma = segments
    elif "liver" in kinds.values():
        parenchyma = [n for n, k in kinds.items() if k == "liver"]
    else:
        parenchyma = [n for n, k in kinds.items() if k in ("remnant", "resected")]
    scenes = {"before": {n: PARENCHYMA_OPACITY for n in parenchyma} | solid}
    remnant = [n for n, k in kinds.items() if k == "remnant"]
    if remnant:
        after = {n: PARENCHYMA_OPACITY for n in remnant}
        after |= {n: RESECTED_OPACITY for n, k in kinds.items() if k == "resected"}
        scenes["after"] = after | solid
    return scenes


def _ensure_offscreen_backend() -> None:
    # Without a display, go straight to EGL (avoids a failed X connection attempt and warning).
    if not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"):
        os.environ.setdefault("VTK_DEFAULT_OPENGL_WINDOW", "vtkEGLRenderWindow")


_RENDER_PROBE = """
import vtkmodules.vtkRenderingOpenGL2
from vtkmodules.vtkRenderingCore import vtkRenderWindow, vtkRenderer, vtkWindowToImageFilter
window = vtkRenderWindow()
window.SetOffScreenRendering(1)
window.SetSize(16, 16)
renderer = vtkRenderer()
renderer.SetBackground(1.0, 0.0, 0.0)
window.AddRenderer(renderer)
window.Render()
grab = vtkWindowToImageFilter()
grab.SetInput(window)
grab.Update()
value = grab.GetOutput().GetPointData().GetScalars().GetTuple(0)
assert value[0] > 200, value
import json, os
maps = "/proc/self/maps"  # the shared libraries loaded (Linux): the kept answer's key
libraries = sorted({line.split()[-1] for line in open(maps) if ".so" in line.rsplit("/", 1)[-1]}) \
    if os.path.exists(maps) else []
print(json.dumps({"backend": window.GetClassName(), "libraries": libraries}))
"""
#: Environment variables (names, and name prefixes ending in ``_``) that can change which OpenGL a
#: render window gets: part of the cached probe answer's key.
_GL_ENVIRONMENT = ("DISPLAY", "WAYLAND_DISPLAY", "LD_LIBRARY_PATH", "LD_PRELOAD", "EGL_", "__EGL_", "__GLX_",
                   "MESA_", "LIBGL_", "GALLIUM_", "LP_", "VTK_", "PYOPENGL_")
#: Files and folders beside the loaded libraries whose change can change the answer.
_GL_FILES = ("/etc/ld.so.cache", "/usr/share/glvnd/egl_vendor.d", "/etc/glvnd/egl_vendor.d", "/dev/dri")
#: A process's first render on a cached answer is not yet verified (:func:`_verified_render`).
_render_verified = False
_render_backend: str | None = None
#: The probe started ahead by :func:`start_offscreen_check` (a Popen), while it runs.
_probe: subprocess.Popen | None = None
_PROBE_LOCK = threading.Lock()
#: One render window at a time per process (OpenGL contexts and vtk's rendering are not
#: thread-safe; dask workers may run several plans in threads of one process).
_RENDER_LOCK = threading.Lock()


def _start_probe() -> subprocess.Popen:
    _ensure_offscreen_backend()
    return subprocess.Popen([sys.executable, "-c", _RENDER_PROBE], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def start_offscreen_check() -> None:
    """Start the probe of :func:`check_offscreen_rendering` in the background, if not yet done.

    Lets the probe (a Python child process, about 0.4 s) run while the meshes are computed;
    the later :func:`check_offscreen_rendering` (or :func:`render_previews`) collects it. No probe
    when this machine's kept answer holds (the module's docstring).
    """
    global _probe
    with _PROBE_LOCK:
        if _render_backend is None and _probe is None and not _use_kept_backend():
            _probe = _start_probe()


def check_offscreen_rendering(*, timeout_s: float = 120.0) -> str:
    """Check once per process, in a child process, that vtk can render offscreen here.

    A vtk render window without a working OpenGL (no EGL/Mesa, no display) can crash the whole
    interpreter; the probe runs in a subprocess so that this becomes a clear error instead.

    Parameters
    ----------
    timeout_s : float
        Give up after this many seconds.

    Returns
    -------
    str
        The vtk render-window class that worked (e.g. ``vtkEGLRenderWindow``).

    Raises
    ------
    NotComputableError
        If offscreen rendering does not work (with the fix in the message).
    """
    global _render_backend, _probe
    with _PROBE_LOCK:
        if _render_backend is not None:
            return _render_backend
        if _probe is None and _use_kept_backend():
            return _render_backend
        proc, _probe = (_probe or _start_probe()), None
        try:
            stdout, stderr = proc.communicate(timeout=timeout_s)
            ok = proc.returncode == 0
            detail = f"exit status {proc.returncode}: " + " ".join(stderr.strip().splitlines()[-2:])
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            ok, stdout, detail = False, "", f"no answer within {timeout_s:.0f} s"
        if not ok:
            raise NotComputableError(
                "previews cannot be rendered: vtk offscreen rendering does not work on this "
                f"machine ({detail[:300]}). Install Mesa's EGL (Debian: apt-get install libegl1 "
                "libgl1 libegl-mesa0 libgl1-mesa-dri) or skip rendering (--no-preview)")
        answer = json.loads(stdout.strip().splitlines()[-1])
        _render_backend = answer["backend"]
        _keep_backend(_render_backend, answer["libraries"])
        log.info("offscreen rendering through %s", _render_backend)
        return _render_backend


def probe_cache_path() -> Path | None:
    """Where the render probe's answer is kept for this Python executable (``$XDG_CACHE_HOME``, else
    ``~/.cache``, ``/hepatoplan/render-probe-<hash of the executable's path>.json``); ``None`` without
    either (no home folder: the probe then runs in every process)."""
    try:
        folder = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "hepatoplan"
    except RuntimeError:  # Path.home(): no $HOME and no password entry for this user
        return None
    return folder / f"render-probe-{hashlib.sha1(sys.executable.encode()).hexdigest()[:12]}.json"


def _use_kept_backend() -> bool:
    """Take the kept answer as this process's (:func:`_cached_backend`) when it holds; call under the lock."""
    global _render_backend
    if (cached := _cached_backend()) is None:
        return False
    _render_backend = cached
    log.info("offscreen rendering through %s (the probe's answer kept in %s)", cached, probe_cache_path())
    return True


def _machine_key(libraries: Sequence[str]) -> dict:
    """What decides the probe's answer: see the module's docstring."""
    import vtkmodules

    def stamp(path: str):
        try:
            if os.path.isdir(path):
                return sorted(os.listdir(path)) if path.startswith("/dev/") else \
                    sorted([e.name, *stamp(e.path)] for e in os.scandir(path))
            st = os.stat(path)
            return [st.st_size, st.st_mtime_ns]
        except OSError:
            return None

    return {"python": sys.executable, "vtk": vtkmodules.__version__,
            "environment": {k: v for k, v in sorted(os.environ.items()) if k in _GL_ENVIRONMENT
                            or any(k.startswith(p) for p in _GL_ENVIRONMENT if p.endswith("_"))},
            "files": {path: stamp(path) for path in [*libraries, *_GL_FILES]}}


def _keep_backend(backend: str, libraries: Sequence[str]) -> None:
    """Write the probe's answer with its key; nothing when the cache folder cannot be written, or without
    the list of loaded libraries (off Linux: there the probe runs in every process, as before)."""
    path = probe_cache_path()
    if not libraries or path is None:
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_file(path) as tmp:
            tmp.write_text(json.dumps({"backend": backend, "libraries": list(libraries),
                                       "key": _machine_key(libraries)}), encoding="utf-8")
    except OSError as exc:
        log.debug("render probe's answer not kept: %s", exc)


def _cached_backend() -> str | None:
    """The kept answer when its key still holds and no earlier first render on it crashed; else ``None``
    (a crashed render's answer is removed)."""
    _ensure_offscreen_backend()  # as the probe and the render see the environment
    if (path := probe_cache_path()) is None:
        return None
    try:
        kept = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    for marker in path.parent.glob(path.name + ".rendering-*"):
        pid = marker.name.rsplit("-", 1)[1]
        if not pid.isdigit() or int(pid) == os.getpid() or not _alive(int(pid)):
            log.warning("an earlier render on the kept answer of the render probe did not finish (process %s); "
                        "probing again", pid)
            marker.unlink(missing_ok=True)
            path.unlink(missing_ok=True)
            return None
    if not isinstance(kept, dict) or kept.get("key") != _machine_key(kept.get("libraries", [])):
        return None
    return kept["backend"]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class _verified_render:
    """Around a process's first render: a marker file beside the kept answer while it runs, and
    :mod:`faulthandler` on (a crash prints the traceback); :func:`_cached_backend` reads the markers."""

    def __enter__(self):
        self.marker, self.faulthandler = None, False  # what this guard made, to undo
        if not _render_verified:
            if (path := probe_cache_path()) is not None:
                marker = path.parent / f"{path.name}.rendering-{os.getpid()}"
                try:
                    marker.touch()
                    self.marker = marker
                except OSError:
                    pass
            if not faulthandler.is_enabled():
                try:
                    faulthandler.enable()
                    self.faulthandler = True
                except (RuntimeError, ValueError, OSError):  # no usable sys.stderr (a daemon's): the marker only
                    pass
        return self

    def __exit__(self, kind, *exc) -> None:
        global _render_verified
        if self.faulthandler:
            faulthandler.disable()
        if kind is None:
            _render_verified = True
        if self.marker is not None:
            self.marker.unlink(missing_ok=True)


def vtk_classes() -> SimpleNamespace:
    """The vtk classes rendering uses (those of meshing, the OpenGL render window (its factory
    picks EGL or X) and FreeType text), imported from their own ``vtkmodules``."""
    import vtkmodules.vtkRenderingFreeType  # noqa: F401  (text actors)
    import vtkmodules.vtkRenderingOpenGL2  # noqa: F401  (the OpenGL implementations)
    from vtkmodules.vtkRenderingCore import (vtkActor, vtkPolyDataMapper, vtkRenderer,
                                             vtkRenderWindow, vtkTextActor,
                                             vtkWindowToImageFilter)

    return SimpleNamespace(**vars(meshing_vtk_classes()), vtkActor=vtkActor,
                           vtkPolyDataMapper=vtkPolyDataMapper, vtkRenderer=vtkRenderer,
                           vtkRenderWindow=vtkRenderWindow, vtkTextActor=vtkTextActor,
                           vtkWindowToImageFilter=vtkWindowToImageFilter)


def render_previews(
    meshes: Mapping[str, Mesh],
    out_dir: str | Path,
    *,
    colours: Mapping[str, Sequence[float]] | None = None,
    scenes: Mapping[str, Mapping[str, float]] | None = None,
    views: Sequence[str] = ("anterior", "superior"),
    size_px: tuple[int, int] = (1000, 800),
    max_triangles_per_structure: int = 60_000,
    on_written: Callable[[Path, np.ndarray], object] | None = None,
    framing: Mapping[str, Mesh] | None = None,
) -> list[Path]:
    """Render PNG previews offscreen: ``preview_<scene>_<view>.png`` for each scene and view.

    Every image of one call shares one camera framing (the bounding box of ``framing``, by default
    of all meshes), so before/after images can be compared directly. Images carry a title,
    orientation letters at the edges (R/L, A/P, S/I, patient directions) and a legend.

    Parameters
    ----------
    meshes : mapping of str to Mesh
        RAS world mm.
    out_dir : str or Path
        Created if needed.
    colours : mapping of str to (r, g, b), optional
        Floats in [0, 1]; default :func:`hepatoplan.pipeline.labels.default_colours`.
    scenes : mapping of str to mapping of str to float, optional
        Scene name -> {structure: opacity}; default :func:`default_scenes`. Unknown structure
        names are ignored with a log message.
    views : sequence of str
        Keys of :data:`VIEWS`: ``anterior`` (camera in front of the patient, patient's right on
        the image's left, superior up) and ``superior`` (camera above the head looking down,
        anterior up).
    size_px : (int, int)
        Image width and height in pixels.
    max_triangles_per_structure : int
        Meshes are decimated to this size for rendering.
    on_written : callable, optional
        Called with each PNG's path and its pixels (uint8, shape (height, width, 3), top row first) once
        it is written, in the thread that writes the images (while the next image renders): e.g.
        ``report.pdf``'s JPEG of it. Its exceptions are raised here.
    framing : mapping of str to Mesh, optional
        The meshes whose bounding box every image frames (default ``meshes``): the same for calls that
        render the scenes of one plan separately (the "before" scene while the resection's meshes
        are made) frames them alike.

    Returns
    -------
    list of Path
        The PNG files, in scene then view order.

    Raises
    ------
    InputError
        If ``meshes`` is empty or a view is unknown.
    NotComputableError
        If offscreen rendering does not work here (see :func:`check_offscreen_rendering`).
    """
    if not meshes:
        raise InputError("no meshes to render")
    unknown = [v for v in views if v not in VIEWS]
    if unknown:
        raise InputError(f"unknown views {unknown}; known: {sorted(VIEWS)}")
    check_offscreen_rendering()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    colours = dict(default_colours(list(meshes))) | dict(colours or {})
    scenes = dict(scenes) if scenes is not None else default_scenes(list(meshes))
    framing = _Framing.of(meshes if framing is None else framing, size_px)
    # each image is coded and written by a thread while the next one renders (vtk's PNG writer
    # runs outside the GIL)
    with _RENDER_LOCK, _verified_render(), ThreadPoolExecutor(max_workers=1) as png:
        vtk = vtk_classes()
        try:
            shown = {name for members in scenes.values() for name in members}
            polydata = {name: _render_polydata(vtk, mesh, max_triangles_per_structure)
                        for name, mesh in meshes.items() if name in shown}
            writing = []
            for scene_name, members in scenes.items():
                writing += _render_scene(vtk, scene_name, members, polydata, colours, framing,
                                         views=views, out_dir=out_dir, png=png, on_written=on_written)
        finally:  # the window is kept for the next call: leave nothing of this one in it,
            # and release its OpenGL context (the next call may come from another thread)
            window = _render_window(vtk)
            window.GetRenderers().RemoveAllItems()
            window.ReleaseCurrent()
        written = [future.result() for future in writing]
    log.info("rendered %d previews to %s", len(written), out_dir)
    return written


@dataclass(frozen=True)
class _Framing:
    """The camera framing shared by every image of one call: the bounding box of all meshes."""

    lo_mm: np.ndarray
    hi_mm: np.ndarray
    size_px: tuple[int, int]

    @classmethod
    def of(cls, meshes: Mapping[str, Mesh], size_px: tuple[int, int]) -> "_Framing":
        points = np.concatenate([m.vertices_mm for m in meshes.values()])
        return cls(points.min(axis=0), points.max(axis=0), (int(size_px[0]), int(size_px[1])))

    def place(self, camera, view: str) -> tuple[np.ndarray, np.ndarray]:
        """Point ``camera`` along ``view`` (parallel projection, the model in the left 78 % of
        the image, the legend column to its right); return (screen right, view up), RAS."""
        towards_camera, view_up = (np.asarray(v, float) for v in VIEWS[view])
        lo, hi = self.lo_mm, self.hi_mm
        centre = (lo + hi) / 2.0
        radius_mm = float(np.linalg.norm(hi - lo) / 2.0) or 1.0
        camera.SetViewUp(*view_up)
        camera.ParallelProjectionOn()
        corners = np.array([[a, b, c] for a in (lo[0], hi[0]) for b in (lo[1], hi[1])
                            for c in (lo[2], hi[2])]) - centre
        screen_right = np.cross(-towards_camera, view_up)
        half_width = np.abs(corners @ screen_right).max()
        half_height = np.abs(corners @ view_up).max()
        aspect = self.size_px[0] / self.size_px[1]
        scale = max(half_height, half_width / (aspect * 0.78)) * 1.12
        camera.SetParallelScale(scale)
        focal = centre + screen_right * (0.5 - 0.39) * 2.0 * scale * aspect
        camera.SetFocalPoint(*focal)
        camera.SetPosition(*(focal + towards_camera * radius_mm * 4.0))
        return screen_right, view_up


def _render_polydata(vtk, mesh: Mesh, max_triangles: int):
    """The mesh decimated for drawing, with vertex normals."""
    small = decimate_mesh(mesh, max_triangles=max_triangles)
    normals = vtk.vtkPolyDataNormals()
    normals.SetInputData(arrays_polydata(small.vertices_mm, small.faces))
    normals.SplittingOff()
    normals.ConsistencyOff()
    normals.AutoOrientNormalsOff()
    normals.Update()
    return normals.GetOutput()


def _actor(vtk, polydata, colour: Sequence[float], opacity: float):
    mapper = vtk.vtkPolyDataMapper()
    mapper.SetInputData(polydata)
    mapper.ScalarVisibilityOff()  # else vtk colours by scalars (black meshes)
    actor = vtk.vtkActor()
    actor.SetMapper(mapper)
    prop = actor.GetProperty()
    prop.SetColor(*[float(c) for c in colour])
    prop.SetOpacity(float(opacity))
    prop.SetSpecular(0.25)
    prop.SetSpecularPower(20.0)
    prop.SetDiffuse(0.85)
    prop.SetAmbient(0.15)
    return actor


def _render_scene(vtk, scene_name: str, members: Mapping[str, float], polydata: Mapping,
                  colours: Mapping[str, Sequence[float]], framing: _Framing, *,
                  views: Sequence[str], out_dir: Path, png: ThreadPoolExecutor,
                  on_written: Callable[[Path, np.ndarray], object] | None = None) -> list[Future]:
    """One scene's structures with their opacities and legend, drawn from each view; ``png`` writes
    the images (Futures of their paths) and calls ``on_written`` with each."""
    renderer = vtk.vtkRenderer()
    renderer.SetBackground(1.0, 1.0, 1.0)
    # translucency by weighted blended order-independent transparency: one geometry pass
    # (depth peeling with 6 peels took ~4x the CPU time on llvmpipe for nearly the same
    # image: mean pixel difference 1-5 of 255 on IRCADb 01, bench/RESULTS.md "## Previews")
    renderer.SetUseDepthPeeling(0)
    renderer.SetUseOIT(1)
    shown = [name for name in members if name in polydata]
    for name in members:
        if name not in polydata:
            log.info("scene %r: no mesh %r, skipped", scene_name, name)
    if not shown:
        log.warning("scene %r has none of its structures: not rendered", scene_name)
        return []
    for name in shown:
        renderer.AddActor(_actor(vtk, polydata[name], colours[name], members[name]))
    for actor in _legend(shown, colours):
        renderer.AddViewProp(actor)
    window = _render_window(vtk)
    window.SetSize(*framing.size_px)
    window.AddRenderer(renderer)
    written = []
    for view in views:
        screen_right, view_up = framing.place(renderer.GetActiveCamera(), view)
        renderer.ResetCameraClippingRange()
        texts = _view_texts(f"{scene_name} resection - {view} view", screen_right, view_up)
        for t in texts:
            renderer.AddViewProp(t)
        written.append(png.submit(_write_png, _rendered_image(vtk, window),
                                  out_dir / f"preview_{scene_name}_{view}.png", on_written))
        for t in texts:
            renderer.RemoveViewProp(t)
    window.RemoveRenderer(renderer)
    return written


def _rendered_image(vtk, window):
    """Render ``window``; its image (vtkImageData, RGB)."""
    from vtkmodules.util.numpy_support import vtk_to_numpy

    window.Render()
    grab = vtk.vtkWindowToImageFilter()
    grab.SetInput(window)
    grab.SetInputBufferTypeToRGB()
    grab.ReadFrontBufferOff()
    grab.ShouldRerenderOff()  # just rendered: read the back buffer as it is
    grab.Update()
    image = grab.GetOutput()
    if vtk_to_numpy(image.GetPointData().GetScalars()).max() == 0:
        raise HepatoplanError(
            "offscreen rendering produced an all-black image: no working OpenGL "
            "(install libegl1 and libgl1-mesa-dri, or run with a display)")
    return image


def _write_png(image, path: Path, then: Callable[[Path, np.ndarray], object] | None = None) -> Path:
    """``image`` (vtkImageData, RGB, rows from the bottom up) as a PNG file (atomically); then
    ``then(path, pixels)``."""
    from vtkmodules.util.numpy_support import vtk_to_numpy

    width, height, _ = image.GetDimensions()
    rgb = vtk_to_numpy(image.GetPointData().GetScalars()).reshape(height, width, 3)[::-1]
    write_png(path, rgb)
    if then is not None:
        then(path, rgb)
    return path


_window = None


def _render_window(vtk):
    """This process's offscreen render window, made on first use and kept (call under
    :data:`_RENDER_LOCK`): llvmpipe compiles each shader program once per OpenGL context, which
    took about a third of a plan's rendering time when every call made its own window."""
    global _window
    if _window is None:
        _window = vtk.vtkRenderWindow()
        _window.SetOffScreenRendering(1)
        _window.SetAlphaBitPlanes(1)
        _window.SetMultiSamples(0)
    return _window


def _text(text: str, x: float, y: float, *, size: int, justify: str = "left", bold=False):
    actor = vtk_classes().vtkTextActor()
    actor.SetInput(text)
    actor.GetPositionCoordinate().SetCoordinateSystemToNormalizedViewport()
    actor.SetPosition(x, y)
    prop = actor.GetTextProperty()
    prop.SetFontSize(size)
    prop.SetColor(0.1, 0.1, 0.1)
    prop.SetBold(bold)
    prop.SetJustification({"left": 0, "centre": 1, "right": 2}[justify])
    prop.SetVerticalJustification(1)
    return actor


def _direction_letter(vector: np.ndarray) -> str:
    axis = int(np.argmax(np.abs(vector)))
    return _RAS_LETTERS[axis][0 if vector[axis] > 0 else 1]


def _view_texts(title: str, screen_right: np.ndarray, view_up: np.ndarray):
    right, up = _direction_letter(screen_right), _direction_letter(view_up)
    left, down = _direction_letter(-screen_right), _direction_letter(-view_up)
    return [
        _text(title, 0.02, 0.97, size=20, bold=True),
        _text(left, 0.02, 0.5, size=22, bold=True),
        _text(right, 0.98, 0.5, size=22, justify="right", bold=True),
        _text(up, 0.5, 0.93, size=22, justify="centre", bold=True),
        _text(down, 0.5, 0.03, size=22, justify="centre", bold=True),
    ]


def _legend(names: Sequence[str], colours: Mapping[str, Sequence[float]]) -> list:
    """Bottom-right legend (right of the model at the default 5:4 size): a coloured square and
    the structure's name in dark text. Tumours each get a line while there are at most
    :data:`LEGEND_MAX_TUMOURS`; beyond that one line ``tumours (n)`` stands for all of them."""
    tumours = [n for n in names if structure_kind(n) == "tumour"]
    if len(tumours) > LEGEND_MAX_TUMOURS:
        first = list(names).index(tumours[0])
        rest = [n for n in names if n not in tumours]
        label = f"tumours ({len(tumours)})"
        colours = dict(colours) | {label: colours[tumours[0]]}
        names = rest[:first] + [label] + rest[first:]
    actors = []
    line = 0.035
    for i, name in enumerate(reversed(list(names))):
        y = 0.02 + line * (i + 1)
        square = _text("    ", 0.80, y, size=14)
        square.GetTextProperty().SetBackgroundColor(*[float(c) for c in colours[name]])
        square.GetTextProperty().SetBackgroundOpacity(1.0)
        actors.append(square)
        actors.append(_text(name, 0.835, y, size=16))
    return actors
