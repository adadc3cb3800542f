"""`anynet-search prepare` end to end against the `imagefolder:` loader it replaces.

Generates N natural-looking JPEGs of 500x375 (quality 90, ~55 KB; `_jpegs.py`) once into a cache folder, then
times the installed CLI `anynet-search prepare imagefolder:DIR --out S --resolution R --workers W` (wall time of
the whole command: interpreter start-up, listing, decoding, writing, manifest) for each W and R, and the old
loader on the same folder: main's `imagefolder:` path before prepare, reimplemented here (Image.open -> convert
RGB -> ImageOps.fit(BILINEAR) per image in one process, then split_arrays' float conversion and normalization),
since this branch's loader decodes with the new decoder. It checks that W=1 and W=2 print the same digest.

The goal it serves (issue 28): on 4,000 JPEGs at R=32, --workers 2 at least 1.4x faster than --workers 1 and at
least 2.5x faster than the old loader.

    .venv/bin/python benchmarks/bench_prepare.py                       # 4000 images, R 32/64/128/224, W 1..cores
    .venv/bin/python benchmarks/bench_prepare.py --images 400 --resolutions 32   # a quick check
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import machine_line, table, warn_if_busy  # noqa: E402
from _jpegs import write_jpegs  # noqa: E402

CLI = str(Path(sys.executable).with_name("anynet-search"))


def make_images(folder: Path, n: int, workers: int) -> None:
    """The benchmark's JPEGs (generated once; a second run reuses them), in parallel slices."""
    per = -(-n // workers)
    with ProcessPoolExecutor(workers) as pool:
        list(pool.map(_make_slice, [(folder, n, start, min(start + per, n)) for start in range(0, n, per)]))


def _make_slice(job: tuple[Path, int, int, int]) -> None:
    folder, _, start, stop = job
    write_jpegs(folder, stop, start=start)  # files already there are kept; each image is a function of its index


def old_loader(folder: Path, resolution: int) -> float:
    """Seconds main's imagefolder: path takes: per-image full decode + ImageOps.fit, then split_arrays."""
    import numpy as np
    from PIL import Image, ImageOps

    from anynet_search.training.data.imagefolder import scan_imagefolder
    from anynet_search.training.data.splits import split_arrays

    start = time.perf_counter()
    scan = scan_imagefolder(str(folder))
    out = np.empty((len(scan.files), resolution, resolution, 3), dtype=np.uint8)
    for i, f in enumerate(scan.files):
        with Image.open(f) as img:
            out[i] = np.asarray(ImageOps.fit(img.convert("RGB"), (resolution, resolution), Image.Resampling.BILINEAR))
    split_arrays(f"imagefolder:{folder}", out.transpose(0, 3, 1, 2), scan.labels, 255.0, resolution, 0, 0.1,
                 len(scan.classes), True, None)
    return time.perf_counter() - start


def prepare(folder: Path, out: Path, resolution: int, workers: int) -> tuple[float, str]:
    """(wall seconds, digest) of one `anynet-search prepare` into a fresh folder."""
    shutil.rmtree(out, ignore_errors=True)
    start = time.perf_counter()
    done = subprocess.run([CLI, "prepare", f"imagefolder:{folder}", "--out", str(out), "--resolution",
                           str(resolution), "--workers", str(workers)], capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"prepare failed: {done.stderr.strip().splitlines()[-1]}")
    return seconds, done.stdout.strip().splitlines()[-1].removeprefix("sha256 ")


def main() -> None:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=4000)
    parser.add_argument("--resolutions", default="32,64,128,224")
    parser.add_argument("--workers", default=",".join(str(w) for w in range(1, cores + 1)))
    parser.add_argument("--repeats", type=int, default=1, help="runs per cell; the fastest counts")
    parser.add_argument("--cache", default=str(Path.home() / ".cache" / "anynet-search-bench" / "prepare"))
    parser.add_argument("--no-old", action="store_true", help="skip the old loader")
    args = parser.parse_args()
    print(machine_line())
    folder = Path(args.cache) / f"jpegs{args.images}"
    start = time.perf_counter()
    make_images(folder, args.images, cores)
    print(f"{args.images} JPEGs of 500x375 in {folder} ({time.perf_counter() - start:.1f} s to make or find)")
    warn_if_busy()
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-prepare-") as tmp:
        for resolution in (int(r) for r in args.resolutions.split(",")):
            digests = {}
            for workers in (int(w) for w in args.workers.split(",")):
                runs = [prepare(folder, Path(tmp) / "store", resolution, workers) for _ in range(args.repeats)]
                seconds = min(s for s, _ in runs)
                digests[workers] = runs[0][1]
                rows.append({"R": resolution, "what": f"prepare --workers {workers}", "seconds": seconds,
                             "images/s": args.images / seconds, "digest": runs[0][1][:12]})
            if 1 in digests and 2 in digests and digests[1] != digests[2]:
                raise SystemExit(f"R={resolution}: --workers 1 and 2 wrote different stores")
            if not args.no_old and resolution == 32:
                seconds = min(old_loader(folder, resolution) for _ in range(args.repeats))
                rows.append({"R": resolution, "what": "old imagefolder: loader", "seconds": seconds,
                             "images/s": args.images / seconds, "digest": "-"})
    print(table(rows))
    for resolution in {r["R"] for r in rows}:
        cells = {r["what"]: r["seconds"] for r in rows if r["R"] == resolution}
        one, two = cells.get("prepare --workers 1"), cells.get("prepare --workers 2")
        if one and two:
            old = cells.get("old imagefolder: loader")
            print(f"R={resolution}: --workers 2 is {one / two:.2f}x --workers 1"
                  + (f" and {old / two:.2f}x the old loader" if old else "") + "; digests of W=1 and W=2 agree")


if __name__ == "__main__":
    main()
