"""Decoders for `prepare`: ms per image to turn a ~500x375 JPEG into a square uint8 image of side S, one process.

Compared: Pillow full decode + `ImageOps.fit` (the `imagefolder:` loader before prepare), Pillow with
`Image.draft` (DCT-scaled decode, what `training.data.decode` does), and the libjpeg-turbo bindings simplejpeg
(`decode_jpeg(min_height=, min_width=)`) and PyTurboJPEG 1.x (`scaling_factor=`, any N/8; 2.x needs libjpeg-turbo 3) where they are installed, each
followed by the same crop + antialiased bilinear resize in Pillow. `diff` is the mean absolute difference, in
8-bit levels, from the full decode's image (how much the reduced decode changes the pixels). simplejpeg runs
with exact DCT and upsampling (as Pillow and PyTurboJPEG do by default) and with its default fast ones.

    .venv/bin/python benchmarks/bench_decoders.py --images 300 --sides 32,64,128,224
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import machine_line, table, warn_if_busy  # noqa: E402
from _jpegs import write_jpegs  # noqa: E402

from anynet_search.training.data.decode import decode_image  # noqa: E402


def _crop_resize(array: np.ndarray, width: int, height: int, side: int) -> np.ndarray:
    """Center-crop (in the original image's coordinates) and resize a scaled decode, as decode_image does."""
    from PIL import Image

    fx = fy = round(8 * array.shape[1] / width) / 8  # libjpeg scales by N/8 and rounds the size up
    short = min(width, height)
    left, top = (width - short) / 2, (height - short) / 2
    box = (left * fx, top * fy, (left + short) * fx, (top + short) * fy)
    return np.asarray(Image.fromarray(array).resize((side, side), Image.Resampling.BILINEAR, box=box))


def pillow_fit(path: Path, side: int) -> np.ndarray:
    """The loader before prepare: full decode, convert, ImageOps.fit (crop + bilinear)."""
    from PIL import Image, ImageOps

    with Image.open(path) as img:
        return np.asarray(ImageOps.fit(img.convert("RGB"), (side, side), Image.Resampling.BILINEAR))


def simplejpeg_decoder(fast: bool):
    """simplejpeg's scaled decode (`fast`: its default fast DCT and upsampling), or None when not installed."""
    try:
        import simplejpeg
    except ImportError:
        return None

    def decode(path: Path, side: int) -> np.ndarray:
        data = path.read_bytes()
        height, width = simplejpeg.decode_jpeg_header(data)[:2]
        array = simplejpeg.decode_jpeg(data, colorspace="RGB", min_height=side, min_width=side, fastdct=fast,
                                       fastupsample=fast)
        return _crop_resize(array, width, height, side)

    return decode


def turbojpeg_decoder():
    """PyTurboJPEG's scaled decode, or None when it (or the libturbojpeg library) is missing."""
    try:
        from turbojpeg import TJPF_RGB, TurboJPEG
    except ImportError:
        return None
    import ctypes.util

    jpeg = None
    for lib in (None, ctypes.util.find_library("turbojpeg")):  # Debian's package names only libturbojpeg.so.0
        try:
            jpeg = TurboJPEG(lib)
            break
        except (OSError, RuntimeError, TypeError):
            continue
    if jpeg is None:
        return None

    def decode(path: Path, side: int) -> np.ndarray:
        data = path.read_bytes()
        width, height = jpeg.decode_header(data)[:2]
        # any N/8 libjpeg-turbo offers (Pillow's draft only takes 1/2, 1/4, 1/8): the smallest keeping the short side
        fits = [f for f in jpeg.scaling_factors if f[0] <= f[1] and min(width, height) * f[0] / f[1] >= side]
        factor = min(fits, key=lambda f: f[0] / f[1]) if fits else (1, 1)
        array = jpeg.decode(data, pixel_format=TJPF_RGB, scaling_factor=factor)
        return _crop_resize(array, width, height, side)

    return decode


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=300)
    parser.add_argument("--sides", default="32,64,128,224")
    parser.add_argument("--rounds", type=int, default=3, help="timed passes per cell; the fastest counts")
    parser.add_argument("--cache", default=str(Path.home() / ".cache" / "anynet-search-bench" / "jpegs"))
    args = parser.parse_args()
    print(machine_line())
    warn_if_busy()
    files = write_jpegs(Path(args.cache), args.images)
    kb = np.mean([f.stat().st_size for f in files]) / 1024
    print(f"{len(files)} JPEGs of 500x375, quality 90, {kb:.0f} KB on average, in {args.cache}")
    decoders = {"Pillow full + ImageOps.fit": pillow_fit, "Pillow draft (decode_image)": decode_image,
                "simplejpeg scaled": simplejpeg_decoder(False), "simplejpeg scaled, fast": simplejpeg_decoder(True),
                "PyTurboJPEG scaled": turbojpeg_decoder()}
    rows = []
    for name, decode in list(decoders.items()):
        if decode is None:
            print(f"{name}: not installed, skipped")
            del decoders[name]
    for side in (int(s) for s in args.sides.split(",")):
        reference = [pillow_fit(f, side).astype(np.int16) for f in files]
        best = dict.fromkeys(decoders, float("inf"))
        images = {}
        for _ in range(args.rounds):  # decoders interleaved round by round: a load change hits them alike
            for name, decode in decoders.items():
                start = time.perf_counter()
                images[name] = [decode(f, side) for f in files]
                best[name] = min(best[name], time.perf_counter() - start)
        for name in decoders:
            diff = float(np.mean([np.abs(a.astype(np.int16) - r).mean() for a, r in zip(images[name], reference)]))
            rows.append({"S": side, "decoder": name, "ms/image": 1000 * best[name] / len(files), "diff": diff})
    print(table(rows))


if __name__ == "__main__":
    main()
