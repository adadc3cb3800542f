"""One image file to a square uint8 RGB array: what `prepare` and the `imagefolder:` loader decode with.

JPEGs are decoded at a reduced size where that still leaves the short side at least S (`Image.draft`: libjpeg's
DCT scaling by 1/2, 1/4 or 1/8, so a 500x375 photo is not fully decoded to make a 32-64 px image), then the
short side is center-cropped to a square and resized to S x S with Pillow's antialiased bilinear filter in one
call (`resize(box=...)`). Every mode becomes RGB: grayscale, CMYK, palette, alpha (dropped), 16-bit (scaled to
8 bits). Pillow identifies a file by its content, so a PNG named `.JPEG` decodes as the PNG it is. There is no
EXIF rotation (torchvision and pycls apply none). benchmarks/RESULTS.md ("Prepare: decoders") compares this
with a full decode and with libjpeg-turbo bindings.

Example (not a doctest: needs a file)::

    decode_image("n01440764/n01440764_10026.JPEG", 32).shape  # (32, 32, 3)
"""

from __future__ import annotations

import os
import warnings
from typing import TYPE_CHECKING

import numpy as np

from anynet_search.errors import DatasetError

if TYPE_CHECKING:
    from PIL import Image

SIXTEEN_BIT = frozenset({"I;16", "I;16L", "I;16B", "I;16N", "I"})  # 16-bit grayscale (PNG, TIFF), 32-bit ints
_RESIZED_AS_IS = frozenset({"RGB", "L"})  # resized in their own mode (L becomes RGB after: 3x less work)


class ImageDecodeError(DatasetError):
    """A file that cannot be decoded: `path` and `reason` (the exception's type and words)."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"cannot read image {path} ({reason})")
        self.path, self.reason = path, reason

    def __reduce__(self) -> tuple:
        """Pickle by path and reason (worker processes send it to the parent)."""
        return type(self), (self.path, self.reason)


def decoder_name() -> str:
    """What decodes files, as the manifest records it: Pillow's and libjpeg's versions and the method."""
    import PIL
    from PIL import features

    jpeg = features.version("jpg") or "?"
    turbo = " (libjpeg-turbo)" if features.check_feature("libjpeg_turbo") else ""
    return f"Pillow {PIL.__version__}, libjpeg {jpeg}{turbo}: draft (DCT-scaled) decode + center crop + bilinear"


def decode_image(path: str | os.PathLike[str], side: int) -> np.ndarray:
    """The image at `path` as uint8 (side, side, 3): short side center-cropped, resized (antialiased), RGB.

    An unreadable, undecodable or truncated file raises ImageDecodeError (a DatasetError) naming it and why."""
    from PIL import Image

    try:
        with warnings.catch_warnings():  # Pillow warns about odd EXIF and palettes: the pixels are what count
            warnings.simplefilter("ignore")
            with Image.open(path) as img:
                width, height = img.size
                fx = fy = 1.0
                if img.format in ("JPEG", "MPO"):  # MPO: a camera's JPEG with extra frames
                    drafted = img.draft("RGB", (side, side))  # the largest 1/8..1/1 scale keeping both sides >= S
                    if drafted is not None:
                        fx, fy = drafted[1][2] / width, drafted[1][3] / height
                img.load()
                img = _eight_bit(img)
                short = min(width, height)
                left, top = (width - short) / 2, (height - short) / 2
                box = (left * fx, top * fy, (left + short) * fx, (top + short) * fy)
                out = img.resize((side, side), getattr(Image, "Resampling", Image).BILINEAR, box=box)
                if out.mode != "RGB":
                    out = out.convert("RGB")
                return np.asarray(out, dtype=np.uint8)
    except Exception as exc:  # Pillow raises UnidentifiedImageError, OSError, SyntaxError, ValueError, ...
        words = " ".join(str(exc).split())
        reason = f"{type(exc).__name__}: {words}" if words else type(exc).__name__
        raise ImageDecodeError(os.fspath(path), reason) from None


def _eight_bit(img: Image.Image) -> Image.Image:
    """`img` in a mode that resizes correctly into RGB: RGB or L as they are, 16-bit scaled to L, the rest RGB."""
    from PIL import Image

    mode = img.mode
    if mode in _RESIZED_AS_IS:
        return img
    if mode in SIXTEEN_BIT:  # Pillow's own conversion clips at 255 instead of scaling 0..65535 down
        wide = np.clip(np.asarray(img, dtype=np.int64), 0, 65535)
        return Image.fromarray(((wide * 255 + 32767) // 65535).astype(np.uint8), "L")
    if mode in ("1", "F"):
        return img.convert("L")
    if mode in ("P", "PA"):  # palette: resizing indices would mix unrelated colours
        return img.convert("RGBA").convert("RGB")
    return img.convert("RGB")  # CMYK, RGBA, LA, YCbCr, LAB, HSV, ...
