"""Automatic segmentation of another revision against this checkout: identical outputs, and CPU A/B.

    python bench/bench_segmentation_identical.py --rev 5c7cde0 [--cases 01 07] [-n 2] [--mr] [--one-process]

For each IRCADb case with a CT, ``segment_study`` (what ``hepatoplan segment`` and CT -> plan run)
in fresh processes of this Python, the other revision (exported with ``git archive`` and imported
through bench_plan_ab.py's copy of the editable-install finder) and this checkout interleaved,
``-n`` rounds. Every output array (liver, tumours, portal and hepatic masks: dtype, shape, every
voxel) and every value of the report (what ``segmentation.json`` holds, ``seconds`` keys aside) is
compared with the other revision's first run. Prints per run the CPU seconds of ``segment_study``
(``time.process_time``: all threads of the process), its wall seconds and the load; exit status 1
when anything differs. ``--mr`` adds the MR scans of bench_mr.py (CHAOS 01, 02, 03, 05 and the
TotalSegmentator MR example, ``modality="MR"``: the liver only), one run per side.

``--one-process``: instead, both revisions' ``segment_study`` in this one process (the other
revision's ``segmentation`` package extracted as ``segmentation_base``, the rest of hepatoplan this
checkout's, as bench_segmentation_ab.py does), calls interleaved on the same arrays: on a shared
machine the fairer CPU comparison (both sides see the same load and the same warm caches); the
arrays and reports are compared as above. One untimed call comes first: a process's first call costs
~2 s more CPU than the next (the same code on IRCADb 01: 15.53 then 13.23 s).
"""

from __future__ import annotations

import argparse
import importlib
import io
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from bench_plan import IRCADB, ROOT  # this folder is on sys.path when run as a script
from bench_plan_ab import other_revision

CASES = IRCADB.parent
DATA = CASES.parent
MR_SCANS = {**{f"mr {c}": DATA / "chaos_mr" / c / "image.nii.gz" for c in ("01", "02", "03", "05")},
            "mr ts": DATA / "totalsegmentator" / "mr.nii.gz"}
ARRAYS = ("liver", "tumours", "portal_vein", "hepatic_veins")
RUN = """
import json, sys, time
import numpy as np
from hepatoplan.pipeline import io
from hepatoplan.pipeline.cmd_segment import _json_default
from hepatoplan.segmentation import segment_study
image = io.read_image(sys.argv[1])
cpu, wall = time.process_time(), time.perf_counter()
seg = segment_study(image.array, spacing_mm=image.spacing_mm, modality=sys.argv[3])
cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
np.savez(sys.argv[2] + ".npz", **{name: getattr(seg, name) for name in %r})
from dataclasses import asdict
report = {"report": seg.report, "parameters": asdict(seg.parameters)}
open(sys.argv[2] + ".json", "w").write(json.dumps(report, default=_json_default, sort_keys=True))
print(json.dumps({"cpu": cpu, "wall": wall}))
""" % (ARRAYS,)


def _strip(value):
    """The report without its timings (``seconds`` keys)."""
    if isinstance(value, dict):
        return {k: _strip(v) for k, v in value.items() if k != "seconds"}
    if isinstance(value, list):
        return [_strip(v) for v in value]
    return value


def differences(ref: Path, new: Path) -> list[str]:
    """What differs between two runs' outputs (``ref`` / ``new``: paths without suffix)."""
    out = []
    a, b = np.load(str(ref) + ".npz"), np.load(str(new) + ".npz")
    for name in ARRAYS:
        x, y = a[name], b[name]
        if x.dtype != y.dtype or x.shape != y.shape:
            out.append(f"{name}: {x.dtype}{x.shape} vs {y.dtype}{y.shape}")
        elif not np.array_equal(x, y):
            out.append(f"{name}: {int(np.count_nonzero(x != y))} voxels differ")
    ja = _strip(json.loads(Path(str(ref) + ".json").read_text()))
    jb = _strip(json.loads(Path(str(new) + ".json").read_text()))
    if ja != jb:
        out += [f"report[{k!r}] differs" for k in sorted(set(ja["report"]) | set(jb["report"]))
                if ja["report"].get(k) != jb["report"].get(k)] or ["report differs"]
    return out


def one_process(rev: str, scans: dict, rounds: int) -> int:
    """``--one-process``: interleaved calls of both revisions in this process; the exit status."""
    from hepatoplan.pipeline import io as hio
    from hepatoplan.pipeline.cmd_segment import _json_default
    from hepatoplan.segmentation import segment_study

    bad = 0
    with tempfile.TemporaryDirectory(prefix="seg-identical-") as tmp:
        tar = subprocess.run(["git", "-C", str(ROOT), "archive", rev, "segmentation"], check=True,
                             capture_output=True).stdout
        tarfile.open(fileobj=io.BytesIO(tar)).extractall(tmp, filter="data")
        (Path(tmp) / "segmentation").rename(Path(tmp) / "segmentation_base")
        sys.path.insert(0, tmp)
        sides = {rev: importlib.import_module("segmentation_base").segment_study, "this": segment_study}
        warm = False
        for case, (path, modality, _) in scans.items():
            image = hio.read_image(path)
            if not warm:  # a process's first call costs ~2 s more CPU (same code, IRCADb 01): not timed
                segment_study(image.array, spacing_mm=image.spacing_mm, modality=modality)
                warm = True
            cpu: dict[str, list[float]] = {side: [] for side in sides}
            ref = None
            for i in range(rounds):
                for side, fn in sides.items():
                    c, w = time.process_time(), time.perf_counter()
                    seg = fn(image.array, spacing_mm=image.spacing_mm, modality=modality)
                    c, w = time.process_time() - c, time.perf_counter() - w
                    cpu[side].append(c)
                    got = ({name: getattr(seg, name) for name in ARRAYS},
                           _strip(json.loads(json.dumps({"report": seg.report, "parameters": asdict(seg.parameters)},
                                                        default=_json_default))))
                    if ref is None:
                        ref, diff = got, []
                    else:
                        diff = [n for n in ARRAYS if got[0][n].dtype != ref[0][n].dtype
                                or not np.array_equal(got[0][n], ref[0][n])] + (["report"] if got[1] != ref[1] else [])
                    bad += bool(diff)
                    print(f"{case} round {i + 1} {side:>10}: CPU {c:6.2f} s, wall {w:6.2f} s, "
                          f"load {os.getloadavg()[0]:4.1f}, {'differs: ' + ', '.join(diff) if diff else 'identical'}",
                          flush=True)
            print(f"{case}: median CPU s " + ", ".join(f"{s} {statistics.median(v):.2f}" for s, v in cpu.items()))
    print("all identical: " + ("no" if bad else "yes"))
    return 1 if bad else 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rev", required=True, help="the other revision (git), e.g. 5c7cde0")
    parser.add_argument("--cases", nargs="*", default=["01", "07"])
    parser.add_argument("-n", type=int, default=1, help="rounds of (rev, this) per case")
    parser.add_argument("--mr", action="store_true", help="also the MR scans (liver only), one round")
    parser.add_argument("--one-process", action="store_true",
                        help="both revisions in this process, calls interleaved (see the module's docstring)")
    opts = parser.parse_args(argv)
    scans = {c: (CASES / c / "ct.nii.gz", "CT", opts.n) for c in opts.cases if (CASES / c / "ct.nii.gz").is_file()}
    if opts.mr:
        scans.update({name: (path, "MR", 1) for name, path in MR_SCANS.items() if path.is_file()})
    if not scans:
        raise SystemExit(f"no IRCADb CT of {opts.cases} under {CASES}")
    if opts.one_process:
        return one_process(opts.rev, scans, opts.n)
    bad = 0
    with tempfile.TemporaryDirectory(prefix="seg-identical-") as tmp:
        folder = Path(tmp) / "rev"
        folder.mkdir()
        sides = {opts.rev: other_revision(opts.rev, folder), "this": ""}
        for case, (path, modality, rounds) in scans.items():
            cpu: dict[str, list[float]] = {side: [] for side in sides}
            for i in range(rounds):
                for side, code in sides.items():
                    dest = Path(tmp) / f"{case.replace(' ', '_')}-{i}-{side[:8]}"
                    proc = subprocess.run([sys.executable, "-c", code + RUN, str(path), str(dest), modality],
                                          capture_output=True, text=True, cwd=tmp)
                    if proc.returncode:
                        raise SystemExit(proc.stderr)
                    t = json.loads(proc.stdout.strip().splitlines()[-1])
                    cpu[side].append(t["cpu"])
                    diff = [] if side == opts.rev and i == 0 else differences(Path(tmp) / f"{case.replace(' ', '_')}-0-{opts.rev[:8]}", dest)
                    bad += bool(diff)
                    print(f"{case} round {i + 1} {side:>10}: CPU {t['cpu']:6.2f} s, wall {t['wall']:6.2f} s, "
                          f"load {os.getloadavg()[0]:4.1f}, {'; '.join(diff) if diff else 'identical'}", flush=True)
            print(f"{case}: median CPU s " + ", ".join(f"{s} {statistics.median(v):.2f}" for s, v in cpu.items()))
    print("all identical: " + ("no" if bad else "yes"))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
