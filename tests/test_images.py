"""hub.images.load_image: every image kind we promise to read, and a clear error for the rest."""
from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from hub.images import ImageError, load_image


def _save(img: Image.Image, path, **kw):
    img.save(path, **kw)
    return path


@pytest.fixture
def gradient():
    """64x48 RGB image whose left half is red and right half blue."""
    arr = np.zeros((48, 64, 3), np.uint8)
    arr[:, :32, 0] = 200
    arr[:, 32:, 2] = 200
    return Image.fromarray(arr)


@pytest.mark.parametrize("fmt,ext", [("PNG", "png"), ("JPEG", "jpg"), ("TIFF", "tif"), ("BMP", "bmp"),
                                     ("WEBP", "webp")])
def test_formats_become_rgb(tmp_path, gradient, fmt, ext):
    out = load_image(_save(gradient, tmp_path / f"x.{ext}", format=fmt))
    assert out.mode == "RGB" and out.size == (64, 48)
    arr = np.asarray(out).astype(int)
    assert arr[:, :16, 0].mean() > 150 and arr[:, -16:, 2].mean() > 150


@pytest.mark.parametrize("mode", ["L", "P", "RGBA", "LA", "CMYK", "1", "I;16", "I", "F"])
def test_modes_become_rgb(tmp_path, gradient, mode):
    img = gradient.convert("L").convert(mode) if mode in ("I;16", "I", "F") else gradient.convert(mode)
    out = load_image(img)
    assert out.mode == "RGB" and out.size == (64, 48)


def test_16bit_png_is_rescaled_not_clipped(tmp_path):
    arr = np.zeros((20, 30), np.uint16)
    arr[:, 15:] = 4095  # a 12-bit scanner value: naive conversion would saturate or vanish
    path = tmp_path / "scan16.png"
    Image.fromarray(arr).save(path)
    assert Image.open(path).mode.startswith("I")
    out = np.asarray(load_image(path))
    assert out[:, :15].max() == 0 and out[:, 15:].min() == 255


def test_rgba_composited_on_black():
    img = Image.new("RGBA", (4, 4), (255, 255, 255, 0))
    assert np.asarray(load_image(img)).max() == 0


def test_exif_orientation_applied(tmp_path, gradient):
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    path = _save(gradient, tmp_path / "rot.jpg", exif=exif.tobytes())
    out = load_image(path)
    assert out.size == (48, 64)  # width and height swapped
    arr = np.asarray(out).astype(int)
    assert arr[:16, :, 0].mean() > 150  # the red (left) half is now on top


def test_numpy_and_bytes(tmp_path, gradient):
    assert load_image(np.asarray(gradient)).size == (64, 48)
    assert load_image(np.asarray(gradient.convert("L"), dtype=np.float32) / 255.0).mode == "RGB"
    buf = io.BytesIO()
    gradient.save(buf, format="PNG")
    assert load_image(buf.getvalue()).size == (64, 48)


def test_animated_gif_uses_first_frame(tmp_path):
    frames = [Image.new("RGB", (10, 10), c) for c in ((255, 0, 0), (0, 255, 0))]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:])
    out = np.asarray(load_image(path))
    assert out[..., 0].mean() > 200 and out[..., 1].mean() < 50


@pytest.mark.parametrize("make,message", [
    (lambda p: p.write_bytes(b""), r"empty \(0 bytes\)"),
    (lambda p: p.write_text("hello, I am text"), "not an image file"),
])
def test_bad_files(tmp_path, make, message):
    path = tmp_path / "bad.png"
    make(path)
    with pytest.raises(ImageError, match=message):
        load_image(path)


def test_truncated_jpeg(tmp_path, gradient):
    path = tmp_path / "cut.jpg"
    gradient.resize((256, 256)).save(path, quality=95)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError, match="corrupt or truncated"):
        load_image(path)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(ImageError, match="no such file"):
        load_image(tmp_path / "nope.png")
    with pytest.raises(ImageError, match="is a directory"):
        load_image(tmp_path)


def test_decompression_bomb_refused_before_decoding(tmp_path):
    path = tmp_path / "huge.png"
    Image.new("L", (9000, 8000)).save(path)  # 72 MP of zeros: tiny file, above the 64 MP limit
    with pytest.raises(ImageError, match="too large"):
        load_image(path)
    with pytest.raises(ImageError, match="too large"):
        load_image(Image.new("L", (100, 100)), max_pixels=5000)


def test_wrong_types_and_shapes():
    with pytest.raises(ImageError, match="cannot read an image from a int"):
        load_image(3)
    with pytest.raises(ImageError, match="not an image"):
        load_image(np.zeros((4, 4, 7)))
    with pytest.raises(ImageError, match="empty"):
        load_image(np.zeros((0, 4)))
