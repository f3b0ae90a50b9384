"""Turn whatever a user hands us (path, bytes, PIL image, numpy array) into an RGB PIL image.

One place decides how odd files become RGB, so training, the notebook API and the app agree:
EXIF orientation is applied, 16-bit and float images are rescaled by their own range (medical
scanners rarely use the full 16 bits), alpha is composited on black, CMYK/palette are converted.
DICOM files (by name or by their `DICM` marker) are read by `hub.dicom`, which windows them.
Every failure is an `ImageError` whose message names the file and what is wrong with it.
"""
from __future__ import annotations

import io
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from hub.dicom import DICOM_HEAD, DICOM_SUFFIXES, check_single_frame, is_dicom, read_dicom, read_single_frame
from hub.errors import ImageError

# Decompression-bomb guard: 64 MP is far above any slide patch or MRI slice we expect.
MAX_PIXELS = 64_000_000

ImageInput = Union[str, os.PathLike, bytes, Image.Image, np.ndarray]


def image_extensions() -> frozenset[str]:
    """File extensions PIL or pydicom can open (lower case, with the dot)."""
    return frozenset(ext.lower() for ext in Image.registered_extensions()) | frozenset(DICOM_SUFFIXES)


def is_image_file(path: str | os.PathLike, extensions: frozenset[str] | None = None) -> bool:
    """True for a visible file with an image extension, or without one but with the DICOM marker
    (132 bytes read)."""
    path = Path(path)
    if path.name.startswith(".") or not path.is_file():
        return False
    suffix = path.suffix.lower()
    if suffix in (image_extensions() if extensions is None else extensions):
        return True
    # DICOM exports often name files IM0001 or by UID (1.2.840.113619.2.5): no extension, or digits after the dot
    if suffix and not suffix[1:].isdigit():
        return False
    return is_dicom(_head(path), path.name)


def _head(path: Path) -> bytes:
    """The bytes that hold the DICOM marker; none if the file cannot be read (the loader then says why)."""
    try:
        with open(path, "rb") as f:
            return f.read(DICOM_HEAD)
    except OSError:
        return b""


def find_images(folder: str | os.PathLike, recursive: bool = True, dicom: bool = True) -> list[Path]:
    """The image files under `folder` (its sub-folders too when `recursive`), sorted; hidden files and
    folders (".cache", ".ipynb_checkpoints", ...) are skipped, and DICOM ones too unless `dicom`. The one
    rule for what counts as an image in a folder: training, `python -m hub explain` and the app's samples
    all list images with it."""
    folder = Path(folder)
    exts = image_extensions() if dicom else image_extensions() - frozenset(DICOM_SUFFIXES)
    found = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(p for p in found if not any(part.startswith(".") for part in p.relative_to(folder).parts)
                  and is_image_file(p, exts) and (dicom or not is_dicom(_head(p), p.name)))


def load_image(source: ImageInput, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Load `source` fully and return it as an 8-bit RGB PIL image."""
    return _load(source, max_pixels, every_frame=False)[0]


def load_frames(source: ImageInput, max_pixels: int = MAX_PIXELS) -> list[Image.Image]:
    """Every frame of a DICOM file as an 8-bit RGB image; any other source gives its one image."""
    return _load(source, max_pixels, every_frame=True)


def check_header(path: str | os.PathLike, max_pixels: int = MAX_PIXELS) -> None:
    """Raise the ImageError `load_image(path)` would raise before decoding a pixel: no such file, empty, not an
    image, zero or over-limit size, a DICOM file without pixels, with several frames or no decoder.

    Only the header is read (a few KB of an image; a DICOM file is parsed, its pixels not decoded), so it is cheap
    enough to run before a request queues; a truncated or corrupt body still shows up only in `load_image`.
    """
    path = Path(path)
    name = str(path)
    _check_file(path, name)
    if is_dicom(_head(path), name):
        check_single_frame(path, name, max_pixels)
        return
    with _pil_errors(name, max_pixels), Image.open(path) as img:
        _check_size(img, name, max_pixels)


def _load(source: ImageInput, max_pixels: int, every_frame: bool) -> list[Image.Image]:
    if isinstance(source, Image.Image):
        return [to_rgb(source, name="image", max_pixels=max_pixels)]
    if isinstance(source, np.ndarray):
        return [to_rgb(_from_array(source), name="array", max_pixels=max_pixels)]
    if isinstance(source, (bytes, bytearray)):
        name, stream, head = "uploaded bytes", io.BytesIO(source), bytes(source[:DICOM_HEAD])
    elif isinstance(source, (str, os.PathLike)):
        path = Path(source)
        name = str(path)
        _check_file(path, name)
        stream, head = path, _head(path)
    else:
        raise ImageError(f"cannot read an image from a {type(source).__name__}; "
                         "pass a path, bytes, a PIL image or a numpy array")
    if not is_dicom(head, name):
        return [_open(stream, name, max_pixels)]
    frames = read_dicom(source, name, max_pixels) if every_frame else [read_single_frame(source, name, max_pixels)]
    return [to_rgb(frame, name=name, max_pixels=max_pixels) for frame in frames]


def _check_file(path: Path, name: str) -> None:
    if not path.exists():
        raise ImageError(f"{name}: no such file")
    if path.is_dir():
        raise ImageError(f"{name}: is a directory, not an image file")
    if path.stat().st_size == 0:
        raise ImageError(f"{name}: the file is empty (0 bytes)")


def _open(stream, name: str, max_pixels: int) -> Image.Image:
    """Open, size-check before decoding, then decode fully so truncation shows up here."""
    with _pil_errors(name, max_pixels), Image.open(stream) as img:
        _check_size(img, name, max_pixels)
        img.load()
        return to_rgb(img, name=name, max_pixels=max_pixels)


@contextmanager
def _pil_errors(name: str, max_pixels: int) -> Iterator[None]:
    """PIL's many failures while opening or decoding as one ImageError each (the header check and the loader's)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            yield
    except ImageError:
        raise
    except UnidentifiedImageError:
        raise ImageError(f"{name}: not an image file (PIL cannot identify its format)") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageError(f"{name}: image is too large (over {max_pixels:,} pixels)") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageError(f"{name}: corrupt or truncated image ({exc})") from None


def _check_size(img: Image.Image, name: str, max_pixels: int) -> None:
    w, h = img.size
    if w == 0 or h == 0:
        raise ImageError(f"{name}: image has zero size ({w}x{h})")
    if w * h > max_pixels:
        raise ImageError(f"{name}: image is too large ({w}x{h} = {w * h:,} pixels; "
                         f"the limit is {max_pixels:,})")


def _from_array(arr: np.ndarray) -> Image.Image:
    """HxW, HxWx1, HxWx3 or HxWx4 arrays of any numeric dtype."""
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (3, 4)):
        raise ImageError(f"array of shape {arr.shape} is not an image; expected HxW, HxWx3 or HxWx4")
    if arr.size == 0:
        raise ImageError(f"array of shape {arr.shape} is empty")
    if arr.dtype != np.uint8:
        arr = _rescale(arr.astype(np.float64))
    return Image.fromarray(arr)


def _rescale(arr: np.ndarray) -> np.ndarray:
    """Min-max scale to uint8; a constant image maps to 0 instead of dividing by zero."""
    finite = np.isfinite(arr)
    if not finite.any():
        return np.zeros(arr.shape, np.uint8)
    lo, hi = arr[finite].min(), arr[finite].max()
    scaled = np.where(finite, (arr - lo) / (hi - lo) if hi > lo else 0.0, 0.0)
    return (scaled * 255.0 + 0.5).astype(np.uint8)


def to_rgb(img: Image.Image, name: str = "image", max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Apply EXIF orientation and convert any PIL mode to 8-bit RGB."""
    _check_size(img, name, max_pixels)
    if getattr(img, "n_frames", 1) > 1:
        img.seek(0)  # animated GIF/multi-page TIFF: the first frame is the image
    img = ImageOps.exif_transpose(img)
    mode = img.mode
    if mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        return Image.fromarray(_rescale(np.asarray(img, dtype=np.float64))).convert("RGB")
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if mode == "RGB":
        return img.copy()
    return img.convert("RGB")


def gain_gamma(x, gain: float = 1.0, gamma: float = 1.0):
    """`clip(gain * x ** gamma, 0, 1)` of [0, 1] pixels (a numpy array or a torch tensor): a scanner's other
    gain and windowing curve. Black stays black, unlike a contrast change that pulls pixels toward the mean.
    Training draws it at random (train.intensity) and the intensity check applies fixed ones
    (hub.explain.intensity)."""
    return (x.clip(0, 1) ** gamma * gain).clip(0, 1)
