"""Read DICOM files (a path or the file's bytes) into 8-bit images, the way a radiology viewer shows them.

Stored values go through the DICOM display chain: the modality LUT (rescale slope/intercept, e.g. CT
numbers in HU), then the file's own window or VOI LUT, else a robust percentile window; MONOCHROME1
is inverted (its 0 is white). Colour files come out RGB: pydicom converts YBR, palette colour goes
through the file's LUT. Compressed pixel data is decoded by whichever pydicom plugin is installed;
when none is, the message names what to pip install, taken from pydicom's own plugin table.

Patient data stays in the file: messages carry only technical values (transfer syntax, photometric
interpretation, size, frame count), pydicom's value checks, whose warnings and log records quote tag
values (names, dates, UIDs), are switched off, and `patient_group` returns a salted hash, never an id.
"""
from __future__ import annotations

import hashlib
import io
import os
import re
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

import numpy as np
import pydicom
from PIL import Image
from pydicom.dataset import Dataset
from pydicom.pixels import apply_color_lut, apply_modality_lut, apply_voi, apply_windowing, get_decoder, iter_pixels
from pydicom.uid import UID, ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from hub.errors import ImageError

DicomSource = Union[str, os.PathLike, bytes, bytearray]

DICOM_SUFFIXES = (".dcm", ".dicom")
MAGIC, MAGIC_AT = b"DICM", 128  # the DICOM file format: a 128-byte preamble, then "DICM"
DICOM_HEAD = MAGIC_AT + len(MAGIC)
# Without a window in the file, the 0.5th..99.5th percentile of the values spans black..white: the
# few extreme pixels (metal, burned-in text, the padding outside a CT's circular field of view) would
# otherwise take most of the 256 grey levels and leave the anatomy a flat grey.
PERCENTILES = (0.5, 99.5)
PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
# pydicom names the Python module a plugin needs; pip knows GDCM's wheel by another name.
PIP_NAMES = {"gdcm": "python-gdcm"}
# A fixed, project-specific prefix: a bare sha256 of a short record number is a lookup-table away.
# (Not a per-process random key: groups must be stable across runs for reproducible splits.)
GROUP_SALT = b"explainable-resnet50/patient-group/v1:"
SERIES_SALT = b"explainable-resnet50/series/v1:"  # `slice_header`'s series: the same reasoning

# Value checks are what quote tag values (names, dates, UIDs) in pydicom's warnings and log records;
# this module reads numbers only, so it has no use for them.
pydicom.config.settings.reading_validation_mode = pydicom.config.IGNORE


def is_dicom(head: bytes, name: str) -> bool:
    """True for a `.dcm`/`.dicom` name or a file whose first 132 bytes end in the `DICM` marker."""
    return name.lower().endswith(DICOM_SUFFIXES) or head[MAGIC_AT:DICOM_HEAD] == MAGIC


def read_dicom(source: DicomSource, name: str, max_pixels: int) -> list[Image.Image]:
    """One 8-bit greyscale ('L') or RGB image per frame of the DICOM file `source` (a path or its bytes).

    A frame over `max_pixels` is refused before anything is decoded; `hub.images.load_frames` passes its limit.
    """
    ds, frames = _image_dataset(source, name, max_pixels)
    return list(_images(ds, name))


def read_single_frame(source: DicomSource, name: str, max_pixels: int) -> Image.Image:
    """The image of a single-frame DICOM file; a multi-frame file is refused (see `read_dicom`)."""
    return next(_images(_single_frame_dataset(source, name, max_pixels), name))


def check_single_frame(source: DicomSource, name: str, max_pixels: int) -> None:
    """Raise the ImageError `read_single_frame` would raise before decoding: no pixels, a zero or oversized frame,
    several frames, no decoder for its transfer syntax. The header is parsed, the pixels are never decoded."""
    _single_frame_dataset(source, name, max_pixels)


def _single_frame_dataset(source: DicomSource, name: str, max_pixels: int) -> Dataset:
    ds, frames = _image_dataset(source, name, max_pixels)
    if frames > 1:
        raise ImageError(f"{name}: DICOM file has {frames} frames, not one image; use hub.images.load_frames(path) "
                         "for one image per frame")
    return ds


def patient_group(path: str | os.PathLike) -> str | None:
    """A short hash of the file's PatientID (else StudyInstanceUID) for patient-level splits; None if neither.

    Stable across runs, so a grouped split (and --resume's data check) is reproducible. Groups are used in
    memory only: training writes counts of groups, never the groups, to metrics.json, the card or a log.
    """
    path = Path(path)
    with open(path, "rb") as f:
        head = f.read(DICOM_HEAD)
    if not is_dicom(head, path.name):
        return None
    with _header_errors(str(path)):
        ds = pydicom.dcmread(path, stop_before_pixels=True, force=True,
                             specific_tags=["PatientID", "StudyInstanceUID"])
        ids = [str(ds.get(keyword) or "").strip() for keyword in ("PatientID", "StudyInstanceUID")]
    value = next((v for v in ids if v), None)
    if value is None:
        return None
    return hashlib.sha256(GROUP_SALT + value.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class SliceHeader:
    """What a study needs of one DICOM file before decoding it: its series (a salted hash, never the UIDs), its
    InstanceNumber (None when absent or not a number) and its frame count."""

    series: Optional[str]
    instance: Optional[int]
    frames: int


def slice_header(path: str | os.PathLike, name: str) -> SliceHeader:
    """The header of the DICOM image file `path` (`name` in messages); an ImageError when it holds no pixels.

    The pixel data is not read (values over 1 KB are deferred). The series is a hash of StudyInstanceUID and
    SeriesInstanceUID (None when the file has neither), stable across runs, and never the UIDs themselves.
    """
    with _header_errors(name):
        ds = pydicom.dcmread(path, force=True, defer_size=1024)
        _check_pixels(ds, name)
        uids = [str(ds.get(keyword) or "").strip() for keyword in ("StudyInstanceUID", "SeriesInstanceUID")]
        try:
            instance = int(ds.get("InstanceNumber"))
        except (TypeError, ValueError):
            instance = None
        frames = int(ds.get("NumberOfFrames") or 1)
    series = hashlib.sha256(SERIES_SALT + "/".join(uids).encode()).hexdigest()[:12] if any(uids) else None
    return SliceHeader(series, instance, frames)


@contextmanager
def _header_errors(name: str) -> Iterator[None]:
    """pydicom parses lazily and reports a malformed header with many exception types: one message for all."""
    try:
        yield
    except ImageError:
        raise
    except Exception as exc:  # noqa: BLE001 - ValueError, KeyError, struct.error, EOFError, ... from a bad header
        # Only the type: pydicom's text may quote the element value it choked on.
        raise ImageError(f"{name}: corrupt DICOM header ({type(exc).__name__} while parsing it); "
                         "re-export the file from the scanner or PACS") from None


def _image_dataset(source: DicomSource, name: str, max_pixels: int) -> tuple[Dataset, int]:
    """The parsed file and its frame count, once the header promises decodable pixels of a sane size."""
    with _header_errors(name):
        fp = io.BytesIO(source) if isinstance(source, (bytes, bytearray)) else source
        # force: files named .dcm without the preamble (old ACR-NEMA style exports) are DICOM too
        ds = pydicom.dcmread(fp, force=True)
        _check_pixels(ds, name)
        rows, cols = int(ds.get("Rows") or 0), int(ds.get("Columns") or 0)
        frames = int(ds.get("NumberOfFrames") or 1)
        _ensure_transfer_syntax(ds)
        syntax = ds.file_meta.TransferSyntaxUID
    if rows == 0 or cols == 0:
        raise ImageError(f"{name}: DICOM image has zero size ({cols}x{rows}); the file holds no pixels, re-export it")
    if rows * cols > max_pixels:
        raise ImageError(f"{name}: image is too large ({cols}x{rows} = {rows * cols:,} pixels; "
                         f"the limit is {max_pixels:,})")
    _check_decoder(syntax, name)
    return ds, frames


def _check_pixels(ds: Dataset, name: str) -> None:
    """An ImageError saying what the file is when it holds no pixel data (a report, a truncated file, garbage)."""
    if any(keyword in ds for keyword in PIXEL_KEYWORDS):
        return
    if "SOPClassUID" not in ds:  # every DICOM object has one; its absence means we read garbage
        raise ImageError(f"{name}: corrupt or truncated DICOM file (no image header could be read); "
                         "re-export the file from the scanner or PACS")
    if "Rows" in ds:
        raise ImageError(f"{name}: DICOM image header but no pixel data (the file is truncated, or was "
                         "saved without its pixels); export or copy it again")
    raise ImageError(f"{name}: DICOM file has no pixel data (a report, plan or other non-image object, "
                     "or a file cut short); export the image series instead")


def _ensure_transfer_syntax(ds: Dataset) -> None:
    """A file without file meta (no preamble) keeps its encoding only in how pydicom read it; decoding needs it."""
    if "TransferSyntaxUID" in ds.file_meta:
        return
    implicit, little = ds.original_encoding
    ds.file_meta.TransferSyntaxUID = (ImplicitVRLittleEndian if implicit
                                      else ExplicitVRLittleEndian if little else ExplicitVRBigEndian)


def _check_decoder(syntax: UID, name: str) -> None:
    """Refuse, before decoding, a transfer syntax that pydicom cannot decode or whose plugins are all missing."""
    try:
        decoder = get_decoder(syntax)
    except NotImplementedError:
        raise ImageError(f"{name}: pixel data in transfer syntax {_syntax(syntax)} has no pydicom decoder; convert "
                         "the file to an uncompressed transfer syntax (e.g. gdcmconv --raw, or dcmdjpeg)") from None
    if not decoder.is_available:
        raise ImageError(f"{name}: pixel data is compressed as {_syntax(syntax)} and no decoder plugin for it "
                         f"is installed; install one: {_install_hint(decoder.missing_dependencies)}")


def _syntax(uid: UID) -> str:
    return f"{uid.name} ({uid})" if uid.name != uid else str(uid)


def _install_hint(missing: list[str]) -> str:
    """'pip install ...' per missing plugin, from pydicom's "label - requires a>=1 and b>=2" lines."""
    commands = []
    for line in missing:
        _, _, requires = line.partition(" - requires ")
        packages = [re.split(r"[<>=!~ ]", req)[0] for req in re.split(r", | and ", requires)]
        packages = [PIP_NAMES.get(p, p) for p in packages if p and p != "numpy"]
        if packages:
            commands.append("pip install " + " ".join(packages))
    return ", or ".join(commands) or "see pydicom's pixel data decoder documentation"


def _images(ds: Dataset, name: str) -> Iterator[Image.Image]:
    """Decode frame by frame (a long cine never sits in memory whole) and map each to display levels."""
    syntax = ds.file_meta.TransferSyntaxUID
    try:
        for arr in iter_pixels(ds):
            yield _display(arr, ds)
    except Exception as exc:  # noqa: BLE001 - pydicom and its plugins raise RuntimeError, ValueError, ... per codec
        reason = textwrap.shorten(str(exc), 300, placeholder=" ...")  # codec errors and pixel-module numbers only
        fix = "re-export it uncompressed" if syntax.is_compressed else "re-export it"
        if missing := get_decoder(syntax).missing_dependencies:
            fix += f", or install another decoder: {_install_hint(missing)}"
        raise ImageError(f"{name}: the {_syntax(syntax)} pixel data could not be decoded ({reason}); "
                         f"the file may be corrupt or truncated: {fix}") from None


def _display(arr: np.ndarray, ds: Dataset) -> Image.Image:
    """One decoded frame as an 8-bit image: colour as RGB, greyscale through modality, VOI and MONOCHROME1."""
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).strip()
    if photometric == "PALETTE COLOR":
        rgb = apply_color_lut(arr, ds)
        return Image.fromarray(_to_uint8(rgb / np.iinfo(rgb.dtype).max))
    if arr.ndim == 3:  # colour: pydicom already converted YBR to RGB
        top = 2 ** int(ds.get("BitsStored") or 8) - 1
        return Image.fromarray(arr if arr.dtype == np.uint8 else _to_uint8(arr / top))
    values = apply_modality_lut(arr, ds)
    grey = _file_voi(values, ds)
    if grey is None:
        grey = _percentile_window(values)
    if photometric == "MONOCHROME1":
        grey = 1.0 - np.clip(grey, 0.0, 1.0)
    return Image.fromarray(_to_uint8(grey))


def _file_voi(values: np.ndarray, ds: Dataset) -> np.ndarray | None:
    """The file's own window (or VOI LUT) as grey levels in 0..1; None if it has none or it is unusable."""
    try:
        if "WindowCenter" in ds and "WindowWidth" in ds:
            # pydicom windows onto the stored value range; -inf and +inf come out as that range's ends
            lo, hi = apply_windowing(np.array([-np.inf, np.inf]), ds)
            return (apply_windowing(values, ds) - lo) / (hi - lo)
        if ds.get("VOILUTSequence"):
            bits = int(ds.VOILUTSequence[0].LUTDescriptor[2])  # a VOI LUT's outputs span 0 .. 2**bits - 1
            return apply_voi(np.rint(values).astype(np.int64), ds) / (2**bits - 1)
    except (ValueError, TypeError, IndexError, AttributeError, NotImplementedError):
        pass  # e.g. a window width of 0: show the image with the percentile window rather than refuse it
    return None


def _percentile_window(values: np.ndarray) -> np.ndarray:
    """0.5th..99.5th percentile -> 0..1; the full range when those coincide (a mask with few bright pixels)."""
    lo, hi = np.percentile(values, PERCENTILES)
    if hi <= lo:
        lo, hi = values.min(), values.max()
    if hi <= lo:
        return np.zeros(values.shape)
    return (values - lo) / (hi - lo)


def _to_uint8(unit: np.ndarray) -> np.ndarray:
    return (np.clip(unit, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
