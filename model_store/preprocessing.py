"""The one image preprocessing of the project: training's evaluation, the export parity check, the
gallery index build and the service all call these functions, so a model sees the same pixels
wherever it runs. ``Preprocessor.prepare`` is the entry point from image bytes or a path to crops.

Pipeline (paper, section 2): decode (EXIF orientation applied, any mode to 8-bit RGB) -> rescale
so the shorter side is ``resize`` -> centre-crop ``resize`` x ``resize`` -> float32 ``* scale``
minus the training-set mean (a mean image or a per-channel mean: numpy broadcasting makes both
the same operation) -> crops of ``crop`` x ``crop`` in NCHW.

Only numpy and Pillow are used here: the service imports this module and must not need torch.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Literal

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from model_store.thumbnails import make_thumbnail

Tta = Literal["ten_crop", "center"]
TTA_MODES: tuple[str, ...] = ("ten_crop", "center")
DEFAULT_MAX_PIXELS = 40_000_000
# The formats decoded. Pillow identifies some forty; the others (EPS, whose loader runs Ghostscript
# on the file, and rarely used parsers such as FLI, PCX, SGI or TGA) are refused as unrecognised, so
# untrusted uploads reach only the common, well-exercised decoders.
IMAGE_FORMATS = ("JPEG", "PNG", "GIF", "WEBP", "BMP", "TIFF")  # JPEG includes MPO (multi-picture JPEG)
ImageSource = bytes | str | Path | BinaryIO | Image.Image
ORIENTATION_TAG = 0x0112
FULL_SIZE_KEY = "full_size"  # Image.info key: (width, height) before draft-mode scaling


def full_size(img: Image.Image) -> tuple[int, int]:
    """The upright size of the stored image ``img`` was decoded from (draft mode decodes it smaller)."""
    return img.info.get(FULL_SIZE_KEY, img.size)


class ImageError(ValueError):
    """The input is not a usable image (the service answers 400)."""


class ImageTooLargeError(ImageError):
    """The image declares more pixels than allowed (decompression-bomb guard; the service answers 413)."""


def _open(source: ImageSource) -> Image.Image:
    if isinstance(source, Image.Image):
        return source
    if isinstance(source, bytes | bytearray):
        if not source:
            raise ImageError("empty image data")
        source = io.BytesIO(source)
    try:
        return Image.open(source, formats=IMAGE_FORMATS)
    except UnidentifiedImageError as exc:
        raise ImageError(f"not a recognised image format (accepted: {', '.join(IMAGE_FORMATS)})") from exc
    except Image.DecompressionBombError as exc:  # Pillow refuses > 2x MAX_IMAGE_PIXELS already in open()
        raise ImageTooLargeError(str(exc)) from exc
    except FileNotFoundError:
        raise
    except (OSError, SyntaxError, ValueError, EOFError) as exc:  # e.g. a JPEG cut off inside its header
        raise ImageError(f"image data is truncated or corrupt ({exc})") from exc


def _to_rgb(img: Image.Image) -> Image.Image:
    """Any Pillow mode to 8-bit RGB; transparency is composited on white, 16-bit is rescaled."""
    if img.mode == "RGB":
        return img
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        arr = np.asarray(img, dtype=np.float64)
        top = 65535.0 if img.mode.startswith("I;16") or arr.max() > 255 else 255.0
        gray = np.clip(arr / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(gray, "L").convert("RGB")
    if img.mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        gray = np.clip(arr * (255.0 if arr.max() <= 1.0 else 1.0) + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(gray, "L").convert("RGB")
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")


def decode_image(source: ImageSource, max_pixels: int = DEFAULT_MAX_PIXELS, draft_min_side: int = 0) -> Image.Image:
    """Decode to an upright 8-bit RGB image.

    The pixel limit is checked on the declared size, before any pixel is decoded, so a small file
    declaring a huge image is refused without allocating it. Animated images use their first frame.

    ``draft_min_side`` > 0 lets libjpeg decode a JPEG at 1/2, 1/4 or 1/8 scale (its DCT-domain
    "draft" mode) while both sides stay at least that long: a 4000x3000 photo wanted at 256 decodes
    as 500x375, much faster (benchmarks/results/decode_h100_host.md). Other formats, and JPEGs under
    twice that size, decode in full.
    """
    img = _open(source)
    width, height = img.size
    if width <= 0 or height <= 0:
        raise ImageError("image has no pixels")
    if width * height > max_pixels:
        raise ImageTooLargeError(f"image is {width}x{height} = {width * height} pixels; the limit is {max_pixels}")
    try:
        drafted = draft_min_side > 0 and img.format == "JPEG" and min(width, height) >= 2 * draft_min_side
        if drafted:
            img.draft(img.mode, (draft_min_side, draft_min_side))
        turned = img.getexif().get(ORIENTATION_TAG, 1) in (5, 6, 7, 8)  # EXIF rotations by 90 degrees
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img.load()
            img = ImageOps.exif_transpose(img) or img
            rgb = _to_rgb(img)
        if drafted:  # the stored image's upright size, for callers that report it
            rgb.info[FULL_SIZE_KEY] = (height, width) if turned else (width, height)
        return rgb
    except Image.DecompressionBombError as exc:  # Pillow's own guard, kept as a second line
        raise ImageTooLargeError(str(exc)) from exc
    except Image.DecompressionBombWarning as exc:
        raise ImageTooLargeError(str(exc)) from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageError(f"image data is truncated or corrupt ({exc})") from exc


def resize_center_crop(img: Image.Image, size: int = 256) -> np.ndarray:
    """Rescale so the shorter side is ``size`` and take the central ``size`` x ``size``: uint8 HWC.

    Only the kept square is resampled (Pillow's ``box``: the source rectangle that rescales onto it,
    same scale, same sample positions), not the whole rescaled image: less CPU than rescaling
    everything and cropping (benchmarks/results/preprocess_cpu.md), and equal to it but for
    rounding (at most 1 of 255)."""
    width, height = img.size
    scale = size / min(width, height)
    new_w, new_h = max(size, round(width * scale)), max(size, round(height * scale))
    left, top = (new_w - size) // 2, (new_h - size) // 2
    per_x, per_y = width / new_w, height / new_h  # source pixels per rescaled pixel
    box = (left * per_x, top * per_y, (left + size) * per_x, (top + size) * per_y)
    return np.asarray(img.resize((size, size), Image.Resampling.BILINEAR, box=box), dtype=np.uint8)


def crop_offsets(full: int, crop: int) -> list[tuple[int, int]]:
    """(top, left) of the paper's five test patches: four corners, then the centre."""
    far, mid = full - crop, (full - crop) // 2
    return [(0, 0), (0, far), (far, 0), (far, far), (mid, mid)]


def ten_crop(chw: np.ndarray, crop: int) -> np.ndarray:
    """[3,H,W] -> [10,3,crop,crop]: top-left, top-right, bottom-left, bottom-right, centre, then the
    same five mirrored horizontally (paper, section 4.1)."""
    _, height, width = chw.shape
    if height != width:
        raise ValueError(f"ten_crop expects a square image, got {height}x{width}")
    out = np.empty((10, chw.shape[0], crop, crop), chw.dtype)
    for i, (top, left) in enumerate(crop_offsets(height, crop)):
        out[i] = chw[:, top : top + crop, left : left + crop]
        out[i + 5] = out[i, ..., ::-1]
    return out


@dataclass(frozen=True)
class Preprocessor:
    """Turns images into the model's input crops. ``mean`` is HxWx3 (a mean image) or (3,)."""

    mean: np.ndarray
    resize: int = 256
    crop: int = 224
    scale: float = 1.0
    max_pixels: int = DEFAULT_MAX_PIXELS
    # True: JPEGs of at least twice ``resize`` decode at reduced scale (see decode_image). Off in
    # training and evaluation; a serving option, measured by benchmarks/bench_decode.py.
    jpeg_draft: bool = False

    def __post_init__(self) -> None:
        mean = np.asarray(self.mean, dtype=np.float32)
        if mean.shape not in ((3,), (self.resize, self.resize, 3)):
            raise ValueError(f"mean must have shape (3,) or ({self.resize}, {self.resize}, 3), got {mean.shape}")
        if not 0 < self.crop <= self.resize:
            raise ValueError(f"crop {self.crop} must be in (0, resize={self.resize}]")
        object.__setattr__(self, "mean", mean)

    def decode(self, source: ImageSource) -> Image.Image:
        """``decode_image`` with this preprocessor's pixel limit (and JPEG draft when enabled)."""
        return decode_image(source, self.max_pixels, self.resize if self.jpeg_draft else 0)

    def square(self, source: ImageSource) -> np.ndarray:
        """Decoded, rescaled and centre-cropped: uint8 [resize, resize, 3]."""
        return resize_center_crop(self.decode(source), self.resize)

    def normalize(self, square: np.ndarray) -> np.ndarray:
        """uint8 HWC -> float32 CHW, scaled and mean-subtracted."""
        return np.ascontiguousarray((square.astype(np.float32) * self.scale - self.mean).transpose(2, 0, 1))

    def crops_from_square(self, square: np.ndarray, tta: Tta) -> np.ndarray:
        if tta == "ten_crop":
            return ten_crop(self.normalize(square), self.crop)
        if tta == "center":
            # normalising only the central patch gives the same floats as normalising the square
            # and cropping it (the mean is per pixel), for a third of the work
            top = (self.resize - self.crop) // 2
            patch = slice(top, top + self.crop)
            mean = self.mean[patch, patch] if self.mean.ndim == 3 else self.mean
            chw = (square[patch, patch].astype(np.float32) * self.scale - mean).transpose(2, 0, 1)
            return np.ascontiguousarray(chw[None])
        raise ValueError(f"tta must be one of {TTA_MODES}, got {tta!r}")

    def prepare(self, source: ImageSource, tta: Tta = "ten_crop", thumbnail: bool = False) -> Prepared:
        """Decode ``source`` once into the model's crops, the image's upright full size and, when
        asked, its gallery thumbnail (raises ImageError for data that is not a usable image)."""
        image = self.decode(source)
        crops = self.crops_from_square(resize_center_crop(image, self.resize), tta)
        width, height = full_size(image)
        return Prepared(crops, width, height, make_thumbnail(image) if thumbnail else None)

    def crops(self, source: ImageSource, tta: Tta = "ten_crop") -> np.ndarray:
        """float32 [10 or 1, 3, crop, crop], ready for the ONNX ``images`` input."""
        return self.prepare(source, tta).crops


@dataclass(frozen=True)
class Prepared:
    """One image made ready for the model by ``Preprocessor.prepare``."""

    crops: np.ndarray  # float32 [10 or 1, 3, crop, crop]
    width: int  # of the stored image, upright (before any JPEG draft scaling)
    height: int
    thumbnail: bytes | None  # the gallery's JPEG thumbnail, when asked for
