"""DICOM through pydicom: display chain numbers, colour, frames, codecs, every refusal, and no patient data out.

Real files come from the installed pydicom wheel (its data/test_files; never the ones pydicom downloads),
the rest are written here with pydicom so each pixel's expected grey level is known.
"""
from __future__ import annotations

import csv
import logging
import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.pixels import get_decoder
from pydicom.uid import MPEG2MPML, ExplicitVRLittleEndian, HTJ2KLossless, SecondaryCaptureImageStorage

from hub.dicom import patient_group, read_dicom
from hub.images import ImageError, image_extensions, is_image_file, load_frames, load_image

SHIPPED = Path(pydicom.__file__).parent / "data" / "test_files"


def shipped(name: str) -> Path:
    """A test file inside the installed pydicom wheel (get_testdata_file would download the others)."""
    path = SHIPPED / name
    assert path.is_file(), f"{name} is not shipped in the installed pydicom wheel"
    return path


def dataset(pixels: np.ndarray, photometric: str = "MONOCHROME2", **tags) -> Dataset:
    """An uncompressed Secondary Capture dataset holding `pixels` (frames first if 3-D greyscale)."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.set_pixel_data(pixels, photometric, pixels.dtype.itemsize * 8)
    with warnings.catch_warnings():  # the privacy test sets an invalid date on purpose
        warnings.simplefilter("ignore")
        for keyword, value in tags.items():
            setattr(ds, keyword, value)
    return ds


def write(path: Path, ds: Dataset) -> Path:
    with warnings.catch_warnings():  # the privacy test writes an invalid date on purpose
        warnings.simplefilter("ignore")
        ds.save_as(path, enforce_file_format=True)
    return path


def grey(img: Image.Image) -> np.ndarray:
    """The single grey channel of an RGB image that must be grey."""
    arr = np.asarray(img).astype(int)
    assert img.mode == "RGB" and (arr[..., 0] == arr[..., 1]).all() and (arr[..., 1] == arr[..., 2]).all()
    return arr[..., 0]


def one_line_error(call, match: str, name: str) -> str:
    with pytest.raises(ImageError, match=match) as info:
        call()
    message = str(info.value)
    assert "\n" not in message and name in message
    return message


# -- real files shipped with pydicom ----------------------------------------------------------------

def test_shipped_ct_and_mr(tmp_path):
    ct = grey(load_image(shipped("CT_small.dcm")))
    assert ct.shape == (128, 128) and ct.min() == 0 and ct.max() == 255  # no window: the percentile window
    # MR_small carries WindowCenter 600 / WindowWidth 1600: a LINEAR window (PS3.3 C.11.2.1.2) onto 0..255
    raw = pydicom.dcmread(shipped("MR_small.dcm")).pixel_array.astype(float)
    expected = np.clip(((raw - 599.5) / 1599 + 0.5) * 255, 0, 255)
    mr = grey(load_image(shipped("MR_small.dcm")))
    assert np.abs(mr - expected).max() <= 1 and mr.min() > 40  # the window, not min-max, set black


@pytest.mark.parametrize("name", ["MR_small_RLE.dcm", "MR_small_jp2klossless.dcm", "MR_small_jpeg_ls_lossless.dcm",
                                  "MR_small_bigendian.dcm", "MR_small_implicit.dcm"])
def test_lossless_encodings_match_uncompressed(name):
    """RLE (pydicom), JPEG 2000 (Pillow), JPEG-LS (pylibjpeg-libjpeg), big endian, implicit VR: same pixels."""
    assert np.array_equal(np.asarray(load_image(shipped(name))), np.asarray(load_image(shipped("MR_small.dcm"))))


def test_colour_files():
    rle = np.asarray(load_image(shipped("SC_rgb_rle.dcm"))).astype(int)
    assert rle.shape == (100, 100, 3) and tuple(rle[2, 50]) == (255, 0, 0)  # top band red
    jpeg = np.asarray(load_image(shipped("SC_rgb_jpeg_dcmtk.dcm"))).astype(int)  # YBR_FULL, JPEG baseline
    assert np.abs(jpeg - rle).mean() < 8
    rgb16 = np.asarray(load_image(shipped("SC_rgb_rle_16bit.dcm"))).astype(int)  # 16 bits per sample
    assert np.abs(rgb16 - rle).max() <= 1
    palette = np.asarray(load_image(shipped("examples_palette.dcm"))).astype(int)
    assert palette.shape == (350, 800, 3) and (palette[..., 0] != palette[..., 2]).any()


def test_shipped_multiframe_colour():
    frames = load_frames(shipped("SC_rgb_rle_2frame.dcm"))
    assert len(frames) == 2 and all(f.mode == "RGB" and f.size == (100, 100) for f in frames)
    assert not np.array_equal(np.asarray(frames[0]), np.asarray(frames[1]))  # the second frame is inverted


# -- written with pydicom: the display chain, number by number ------------------------------------------

def test_rescale_then_window_gives_known_grey_levels(tmp_path):
    stored = np.array([[400, 550, 575, 1000]], np.uint16)  # HU = 2 * stored - 1000: -200, 100, 150, 1000
    path = write(tmp_path / "ct.dcm", dataset(stored, RescaleSlope=2, RescaleIntercept=-1000,
                                              WindowCenter=100, WindowWidth=201))
    # LINEAR window 100/201 spans -0.5..199.5 HU: below -> 0, ((HU - 99.5) / 200 + 0.5) * 255, above -> 255
    assert grey(load_image(path)).tolist() == [[0, 128, 192, 255]]


def test_without_window_the_percentiles_set_the_contrast(tmp_path):
    ramp = np.arange(1000, dtype=np.uint16).reshape(40, 25)
    ramp[0, 0] = 60000  # one hot pixel: min-max scaling would put the whole ramp below grey level 5
    plain = grey(load_image(write(tmp_path / "ramp.dcm", dataset(ramp))))
    assert plain[0, 0] == 255 and 124 <= plain[20, 0] <= 132 and len(np.unique(plain)) > 200  # 500 is mid-grey
    broken = write(tmp_path / "zero-width.dcm", dataset(ramp, WindowCenter=500, WindowWidth=0))
    assert np.array_equal(grey(load_image(broken)), plain)  # an unusable window falls back to the same


def test_voi_lut_sequence(tmp_path):
    lut = Dataset()
    lut.add_new("LUTDescriptor", "US", [4, 0, 8])  # 4 entries for stored values 0..3, 8-bit output
    lut.add_new("LUTData", "US", [0, 51, 102, 255])
    ds = dataset(np.array([[0, 1, 2, 3, 9]], np.uint16))
    ds.VOILUTSequence = [lut]
    assert grey(load_image(write(tmp_path / "lut.dcm", ds))).tolist() == [[0, 51, 102, 255, 255]]


def test_monochrome1_is_inverted(tmp_path):
    pixels = np.array([[0, 1000, 2000, 4095]], np.uint16)
    window = {"WindowCenter": 2048, "WindowWidth": 4096}
    mono2 = grey(load_image(write(tmp_path / "m2.dcm", dataset(pixels, "MONOCHROME2", **window))))
    mono1 = grey(load_image(write(tmp_path / "m1.dcm", dataset(pixels, "MONOCHROME1", **window))))
    assert mono2[0, 0] == 0 and mono2[0, 3] == 255  # MONOCHROME2: 0 is black
    assert mono1[0, 0] == 255 and mono1[0, 3] == 0  # MONOCHROME1: 0 is white
    assert (mono1 + mono2 == 255).all()


def test_multiframe_refused_by_load_image_split_by_load_frames(tmp_path):
    frames = np.stack([np.full((8, 6), v, np.uint16) for v in (0, 1000, 2000)])
    path = write(tmp_path / "cine.dcm", dataset(frames, WindowCenter=1000, WindowWidth=2000))
    message = one_line_error(lambda: load_image(path), "3 frames", str(path))
    assert "load_frames" in message
    images = load_frames(path)
    assert [img.mode for img in images] == ["RGB"] * 3
    assert [int(grey(img).mean()) for img in images] == [0, 128, 255]
    assert [img.mode for img in read_dicom(path, "cine", 10_000)] == ["L"] * 3
    assert len(load_frames(shipped("CT_small.dcm"))) == 1


def test_extensionless_and_uid_named_files_are_found(tmp_path):
    ds = dataset(np.arange(48, dtype=np.uint16).reshape(6, 8))
    for name in ("IM0001", "1.2.840.113619.2.5"):
        path = write(tmp_path / name, ds)
        assert is_image_file(path) and load_image(path).size == (8, 6)
    Image.new("RGB", (4, 4)).save(tmp_path / "photo", format="PNG")
    (tmp_path / "notes.txt").write_text("x" * 200)
    (tmp_path / "folder.dcm").mkdir()
    assert not any(is_image_file(tmp_path / n) for n in ("photo", "notes.txt", "folder.dcm", "missing"))
    assert {".dcm", ".dicom", ".png"} <= image_extensions()


def test_dcm_without_preamble(tmp_path):
    """Old exports: no preamble, no file meta; found by the .dcm name, read in pydicom's guessed encoding."""
    ds = dataset(np.array([[0, 100], [200, 300]], np.uint16), WindowCenter=150, WindowWidth=300)
    del ds.file_meta
    path = tmp_path / "legacy.dcm"
    ds.save_as(path, implicit_vr=True, little_endian=True)
    assert path.read_bytes()[128:132] != b"DICM"
    # LINEAR 150/300 spans -0.5..298.5: 100 -> (100 - 149.5) / 299 + 0.5 = 0.334 -> 85; 200 -> 0.669 -> 171
    assert grey(load_image(path)).tolist() == [[0, 85], [171, 255]]


def test_bytes_input_as_the_app_upload_gives(tmp_path):
    path = write(tmp_path / "upload.dcm", dataset(np.arange(48, dtype=np.uint16).reshape(6, 8)))
    assert np.array_equal(np.asarray(load_image(path.read_bytes())), np.asarray(load_image(path)))
    frames = dataset(np.zeros((2, 4, 4), np.uint16))
    message = one_line_error(lambda: load_image(write(tmp_path / "two.dcm", frames).read_bytes()),
                             "2 frames", "uploaded bytes")
    assert "two.dcm" not in message


# -- refusals: one line, naming the file and what to do -------------------------------------------------

def _recoded(tmp_path: Path, syntax: str) -> Path:
    """MR_small's JPEG 2000 stream labelled with another (encapsulated) transfer syntax."""
    ds = pydicom.dcmread(shipped("MR_small_jp2klossless.dcm"))
    ds.file_meta.TransferSyntaxUID = syntax
    return write(tmp_path / f"{syntax}.dcm", ds)


def test_no_pixel_data(tmp_path):
    one_line_error(lambda: load_image(shipped("rtplan.dcm")), "no pixel data .*export the image series", "rtplan")
    ds = dataset(np.zeros((4, 4), np.uint16))
    del ds.PixelData
    path = write(tmp_path / "header-only.dcm", ds)
    one_line_error(lambda: load_image(path), "image header but no pixel data .*truncated", str(path))


def test_zero_size(tmp_path):
    ds = dataset(np.zeros((1, 1), np.uint8))
    ds.Rows, ds.Columns, ds.PixelData = 0, 0, b""
    path = write(tmp_path / "empty.dcm", ds)
    one_line_error(lambda: load_image(path), r"zero size \(0x0\)", str(path))


def test_too_large_refused_before_decoding(tmp_path):
    path = write(tmp_path / "big.dcm", dataset(np.zeros((100, 100), np.uint8)))
    one_line_error(lambda: load_image(path, max_pixels=5000), "too large", str(path))


@pytest.mark.parametrize("make,match", [
    (lambda p: p.write_bytes(bytes(128) + b"DICM" + b"\xff" * 300), "corrupt"),
    (lambda p: p.write_bytes(shipped("badVR.dcm").read_bytes()), r"corrupt DICOM header \(ValueError"),
    (lambda p: p.write_bytes(shipped("MR_small.dcm").read_bytes()[:-4000]), "could not be decoded .*truncated"),
])
def test_corrupt_files(tmp_path, make, match):
    path = tmp_path / "bad.dcm"
    make(path)
    one_line_error(lambda: load_image(path), match, str(path))


def test_transfer_syntax_without_any_decoder(tmp_path):
    path = _recoded(tmp_path, MPEG2MPML)
    one_line_error(lambda: load_image(path), "MPEG2 .*no pydicom decoder; convert", str(path))


def test_missing_plugin_is_named(tmp_path):
    """HTJ2K decodes only through pylibjpeg + pylibjpeg-openjpeg, which requirements.txt does not pin."""
    path = _recoded(tmp_path, HTJ2KLossless)
    if get_decoder(HTJ2KLossless).is_available:  # someone installed it: then it must decode
        assert np.array_equal(np.asarray(load_image(path)), np.asarray(load_image(shipped("MR_small.dcm"))))
    else:
        one_line_error(lambda: load_image(path), "no decoder plugin .*pip install pylibjpeg pylibjpeg-openjpeg",
                       str(path))


def test_undecodable_with_the_installed_plugins():
    """A corrupt 12-bit JPEG: both installed decoders fail; the message says so and names the third."""
    path = shipped("JPEG-lossy.dcm")
    message = one_line_error(lambda: load_image(path), "could not be decoded", str(path))
    assert "pylibjpeg" in message and "re-export it uncompressed" in message


# -- patient data never leaves the file ---------------------------------------------------------------

SECRETS = {"PatientName": "Doe^Jane", "PatientID": "MRN-0012345", "PatientBirthDate": "1970-01-31",
           "StudyDate": "20240102", "StudyInstanceUID": "1.2.999.4242.X", "InstitutionName": "St Example Hospital"}


def test_no_patient_data_in_messages_logs_or_output(tmp_path, caplog, capfd):
    caplog.set_level(logging.DEBUG)
    pixels = np.arange(64, dtype=np.uint16).reshape(8, 8)
    good = write(tmp_path / "good.dcm", dataset(pixels, **SECRETS))
    frames = write(tmp_path / "frames.dcm", dataset(np.stack([pixels, pixels]), **SECRETS))
    no_pixels = dataset(pixels, **SECRETS)
    del no_pixels.PixelData
    no_pixels = write(tmp_path / "nopixels.dcm", no_pixels)
    mpeg = pydicom.dcmread(_recoded(tmp_path, MPEG2MPML))
    for keyword, value in SECRETS.items():
        setattr(mpeg, keyword, value)
    mpeg = write(tmp_path / "mpeg.dcm", mpeg)
    truncated = tmp_path / "truncated.dcm"
    truncated.write_bytes(good.read_bytes()[:-20])

    shown = []
    caplog.clear()  # from here on, only what loading produces
    capfd.readouterr()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        images = [load_image(good), *load_frames(frames), load_image(good.read_bytes())]
        for path in (frames, no_pixels, mpeg, truncated):
            with pytest.raises(ImageError) as info:
                load_image(path)
            shown.append(str(info.value))
        groups = [patient_group(p) for p in (good, frames)]
    shown += [str(w.message) for w in caught] + [r.getMessage() for r in caplog.records]
    shown += [repr(img.info) for img in images] + list(capfd.readouterr()) + groups
    text = "\n".join(shown)
    assert len(shown) > 4 and "2 frames" in text  # the errors did happen
    for value in [*SECRETS.values(), "Doe", "Jane", "0012345", "19700131"]:
        assert value not in text


def test_patient_group(tmp_path):
    pixels = np.zeros((2, 2), np.uint16)
    a1 = write(tmp_path / "a1.dcm", dataset(pixels, PatientID="MRN-1"))
    a2 = write(tmp_path / "a2", dataset(pixels, PatientID="MRN-1", StudyInstanceUID="1.2.3"))
    b = write(tmp_path / "b.dcm", dataset(pixels, PatientID="MRN-2"))
    study = write(tmp_path / "study.dcm", dataset(pixels, PatientID="", StudyInstanceUID="1.2.3"))
    neither = write(tmp_path / "anon.dcm", dataset(pixels))
    Image.new("L", (2, 2)).save(tmp_path / "x.png")
    group = patient_group(a1)
    assert group == patient_group(a2) != patient_group(b) and len(group) == 16 and "MRN" not in group
    assert patient_group(study) not in (None, group)
    assert patient_group(neither) is None and patient_group(tmp_path / "x.png") is None


# -- every entry point: training folders, the explain CLI, Classifier, the app ----------------------------

@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    from app_fixtures import random_model_folder

    return random_model_folder(tmp_path_factory.mktemp("dicom-model") / "model", arch="resnet18",
                               labels=("a", "b"))


@pytest.fixture()
def dicom_classes(tmp_path) -> Path:
    """Two class folders, each with a .dcm file and an extension-less DICOM file."""
    rng = np.random.default_rng(0)
    for label in ("a", "b"):
        (tmp_path / "data" / label).mkdir(parents=True)
        for name in ("scan.dcm", "IM0001"):
            write(tmp_path / "data" / label / name, dataset(rng.integers(0, 4096, (40, 48), dtype=np.uint16)))
    return tmp_path / "data"


def test_training_folders_pick_up_dicom(dicom_classes):
    from train.data import scan_folder, validate_images

    found = scan_folder(dicom_classes)
    assert {p.name for paths in found.values() for p in paths} == {"scan.dcm", "IM0001"}
    kept, skipped = validate_images(found, "--data", workers=1)
    assert sum(map(len, kept.values())) == 4 and not skipped


def test_classifier_and_explain_cli_accept_dicom(tiny_model, dicom_classes, tmp_path):
    from hub import from_pretrained
    from hub.__main__ import main
    from hub.explain.batch import CSV_NAME

    clf = from_pretrained(tiny_model)
    scan = dicom_classes / "a" / "scan.dcm"
    assert set(clf.predict(scan)) == {"a", "b"} and set(clf.predict(scan.read_bytes())) == {"a", "b"}
    assert clf.explain(dicom_classes / "b" / "IM0001", method="gradcam").heatmap.shape == (40, 48)
    out = tmp_path / "out"
    assert main(["explain", str(tiny_model), str(dicom_classes), "--out", str(out), "--method", "gradcam"]) == 0
    with open(out / CSV_NAME, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 4 and not any(r["error"] for r in rows) and all(r["overlay"] for r in rows)


def test_app_reads_dicom_uploads(dicom_classes, tmp_path):
    from hub.errors import UserError
    from space.handlers import read_image

    assert read_image(str(dicom_classes / "a" / "IM0001")).size == (48, 40)
    upload = tmp_path / "gradio-cache" / "cine.dcm"
    upload.parent.mkdir()
    write(upload, dataset(np.zeros((2, 4, 4), np.uint16)))
    with pytest.raises(UserError, match="'cine.dcm': DICOM file has 2 frames"):
        read_image(str(upload))
