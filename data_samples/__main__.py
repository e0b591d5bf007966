"""``python -m data_samples``: write a synthetic phantom study (or regenerate the shipped demo).

Examples
--------
python -m data_samples --out /tmp/ph --spacing-mm 0.75,0.75,2 --shape 512,512,300
python -m data_samples --out /tmp/ph_lps --axcodes LPS --scale 0.6 --extras
python -m data_samples --demo            # rewrites data_samples/demo/ reproducibly
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

from hepatoplan.errors import HepatoplanError

from .phantom import DEFAULT_TUMOURS, make_phantom
from .write import DEMO_AXCODES, DEMO_DIR, DEMO_PARAMS, write_study

log = logging.getLogger("hepatoplan.data_samples")


def _triple(text: str, kind):
    parts = [p for p in text.replace("x", ",").split(",") if p.strip()]
    if len(parts) != 3:
        raise argparse.ArgumentTypeError(f"expected 3 comma-separated numbers, found {text!r}")
    try:
        return tuple(kind(p) for p in parts)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected 3 comma-separated numbers, found {text!r}") from exc


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m data_samples", description="Write a synthetic liver phantom study.")
    p.add_argument("--out", type=Path, help="output folder")
    p.add_argument("--spacing-mm", type=lambda t: _triple(t, float), default=(1.5, 1.5, 2.5),
                   help="voxel spacing x,y,z in mm (RAS order), default 1.5,1.5,2.5")
    p.add_argument("--shape", type=lambda t: _triple(t, int), default=None,
                   help="grid shape nx,ny,nz (default: covers the body)")
    p.add_argument("--scale", type=float, default=1.0, help="anatomy scale factor (default 1.0)")
    p.add_argument("--rotation-deg", type=float, default=0.0,
                   help="turn the body about the z axis by this angle, within [-30, 30] (default 0)")
    p.add_argument("--seed", type=int, default=0, help="noise seed")
    p.add_argument("--noise-hu", type=float, default=12.0, help="CT noise SD in HU")
    p.add_argument("--axcodes", default="RAS", help="axis codes of the written arrays, e.g. RAS, LPS, PIR")
    p.add_argument("--no-tumours", action="store_true", help="no tumours")
    p.add_argument("--extras", action="store_true", help="also write branch label maps and territories")
    p.add_argument("--demo", action="store_true",
                   help=f"regenerate the shipped demo ({DEMO_PARAMS}, axcodes {DEMO_AXCODES}) into --out or {DEMO_DIR}")
    return p


def main(argv=None) -> int:
    """Entry point; returns the exit status (0 ok, 2 bad input)."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    try:
        t0 = time.perf_counter()
        if args.demo:
            out = args.out or DEMO_DIR
            study = make_phantom(**DEMO_PARAMS)
            written = write_study(study, out, axcodes=DEMO_AXCODES)
        else:
            if args.out is None:
                print("error: --out DIR is required (or --demo)", file=sys.stderr)
                return 2
            study = make_phantom(spacing_mm=args.spacing_mm, shape=args.shape, scale=args.scale, seed=args.seed,
                                 noise_hu=args.noise_hu, tumours=() if args.no_tumours else DEFAULT_TUMOURS,
                                 rotation_deg=args.rotation_deg)
            written = write_study(study, args.out, axcodes=args.axcodes, extras=args.extras)
    except HepatoplanError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    log.info("wrote %d files to %s (shape %s, liver %.1f mL) in %.1f s", len(written), written["truth"].parent,
             study.shape, study.truth["volumes_ml"]["liver"], time.perf_counter() - t0)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
