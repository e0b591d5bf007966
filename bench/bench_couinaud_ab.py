"""Runtime A/B of the Couinaud division: another commit's ``couinaud`` package against this one's,
calls interleaved on the same arrays in one process (the fair comparison on a shared machine).

Usage::

    python bench/bench_couinaud_ab.py --base COMMIT [--case 01 ...|all] [--mode separate combined] [-n 5]

``separate``: :func:`segment_couinaud` on the case's liver, portal_vein and hepatic_veins (bool,
C-ordered, as the plan passes them); ``combined``: :func:`segment_couinaud_from_vessels` on
``(portal_vein | hepatic_veins) & liver``. The base commit's ``couinaud/`` folder is extracted with
``git archive`` into a temporary folder and imported as ``couinaud_base``, with the base's
``hepatoplan/nearest_voxel*.py`` beside it (its couinaud's imports of them rewritten); the rest of
hepatoplan is this checkout's. One warm-up call each, then ``-n`` rounds of (base, this); prints CPU and wall
seconds per call (median, min) and whether the labels are identical.

``--cold``: every call in a fresh process, as the CLI runs it: the seconds of importing the package
(numba and its compiled functions' setup included) plus the first call, the masks already loaded.
"""

from __future__ import annotations

import argparse
import importlib
import io
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np

from bench_couinaud import DEFAULT_DATA, ROOT, load  # this folder is on sys.path when run as a script

from hepatoplan.couinaud import segment as this


def base_module(commit: str, folder: Path):
    paths = ["couinaud"] + [f"hepatoplan/{f}" for f in ("nearest_voxel.py", "nearest_voxel_compiled.py")
                            if subprocess.run(["git", "-C", str(ROOT), "cat-file", "-e", f"{commit}:hepatoplan/{f}"],
                                              stderr=subprocess.DEVNULL).returncode == 0]
    tar = subprocess.run(["git", "-C", str(ROOT), "archive", commit, *paths], check=True, capture_output=True).stdout
    tarfile.open(fileobj=io.BytesIO(tar)).extractall(folder, filter="data")
    (folder / "couinaud").rename(folder / "couinaud_base")
    for f in (folder / "hepatoplan").glob("*.py"):  # the base's nearest voxel, as its couinaud imports it
        f.rename(folder / "couinaud_base" / f.name)
    for f in (folder / "couinaud_base").glob("*.py"):
        f.write_text(f.read_text().replace("hepatoplan.nearest_voxel", "couinaud_base.nearest_voxel"))
    sys.path.insert(0, str(folder))
    return importlib.import_module("couinaud_base.segment")


def cold_call(module: str, folder: str, case_dir: str, mode: str) -> None:
    """One first call in this (fresh) process; prints 'CPU wall md5' of the import plus the call."""
    import hashlib
    (liver, sp), (portal, _), (hepatic, _) = (load(Path(case_dir), n) for n in ("liver", "portal_vein", "hepatic_veins"))
    liver, portal, hepatic = (np.ascontiguousarray(m > 0) for m in (liver, portal, hepatic))
    vessels = (portal | hepatic) & liver
    sys.path.insert(0, folder)
    t, c = time.perf_counter(), time.process_time()
    mod = importlib.import_module(module)
    r = (mod.segment_couinaud(liver, portal, hepatic, spacing_mm=sp) if mode == "separate"
         else mod.segment_couinaud_from_vessels(liver, vessels, spacing_mm=sp))
    print(time.process_time() - c, time.perf_counter() - t, hashlib.md5(r.labels.tobytes()).hexdigest())


def cold_rounds(folder: Path, case_dir: Path, mode: str, n: int) -> tuple[np.ndarray, np.ndarray, bool]:
    """``n`` interleaved rounds of fresh processes (base, this): (CPU, wall) per call and whether the labels agree."""
    times, md5 = {"base": [], "this": []}, {"base": set(), "this": set()}
    for i in range(n + 1):  # round 0 not counted: numba's cache of the extracted base is written there
        for name, module in (("base", "couinaud_base.segment"), ("this", "hepatoplan.couinaud.segment")):
            out = subprocess.run([sys.executable, __file__, "--cold-child", module, str(folder), str(case_dir), mode],
                                 check=True, capture_output=True, text=True).stdout.split()
            if i:
                times[name].append((float(out[0]), float(out[1])))
            md5[name].add(out[2])
    return np.array(times["base"]), np.array(times["this"]), md5["base"] == md5["this"] and len(md5["this"]) == 1


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--cold-child"]:  # one call of cold_rounds
        cold_call(*argv[1:])
        return 0
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", required=True, help="commit whose couinaud/ is compared with this checkout's")
    ap.add_argument("--case", nargs="+", default=["01"], help="case numbers, or 'all' (01-12)")
    ap.add_argument("--mode", nargs="+", choices=("separate", "combined"), default=["separate"])
    ap.add_argument("-n", type=int, default=5)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--cold", action="store_true", help="each call in a fresh process, imports included")
    a = ap.parse_args(argv)
    cases = [f"{i:02d}" for i in range(1, 13)] if a.case == ["all"] else a.case
    missing = [c for c in cases if not (a.data / c).is_dir()]
    if missing:
        print(f"no data at {a.data} for {missing} (see ../shared/data/README.md)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        base = base_module(a.base, Path(tmp))
        for case in cases:
            d = a.data / case
            if a.cold:
                for mode in a.mode:
                    report(case, mode, a, *cold_rounds(Path(tmp), d, mode, a.n), "fresh process per call, ")
                continue
            (liver, sp), (portal, _), (hepatic, _) = (load(d, n) for n in ("liver", "portal_vein", "hepatic_veins"))
            liver, portal, hepatic = (np.ascontiguousarray(m > 0) for m in (liver, portal, hepatic))
            vessels = (portal | hepatic) & liver
            for mode in a.mode:

                def call(mod):
                    if mode == "separate":
                        return mod.segment_couinaud(liver, portal, hepatic, spacing_mm=sp)
                    return mod.segment_couinaud_from_vessels(liver, vessels, spacing_mm=sp)

                same = np.array_equal(call(base).labels, call(this).labels)
                times = {"base": [], "this": []}
                for _ in range(a.n):
                    for name, mod in (("base", base), ("this", this)):
                        t, c = time.perf_counter(), time.process_time()
                        call(mod)
                        times[name].append((time.process_time() - c, time.perf_counter() - t))
                report(case, mode, a, np.array(times["base"]), np.array(times["this"]), same)
    return 0


def report(case, mode, a, b, t, same, how="") -> None:
    print(f"IRCADb {case}, {mode} masks, {a.n} interleaved rounds, {how}load average {os.getloadavg()[0]:.1f} on "
          f"{os.cpu_count()} cores: CPU s per call median {np.median(b[:, 0]):.2f} (base {a.base}) -> "
          f"{np.median(t[:, 0]):.2f} (this), min {b[:, 0].min():.2f} -> {t[:, 0].min():.2f}; wall median "
          f"{np.median(b[:, 1]):.2f} -> {np.median(t[:, 1]):.2f}, min {b[:, 1].min():.2f} -> "
          f"{t[:, 1].min():.2f}; labels identical: {same}", flush=True)


if __name__ == "__main__":
    raise SystemExit(main())
