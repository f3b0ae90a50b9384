"""The files the app answers with: every picture as a PNG in Gradio's cache, written atomically.

Every image output goes out as a file path, not as a PIL image: Gradio saves PIL outputs to a path
named by their content with a plain write, so two requests with the same answer at the same moment
could serve each other a half-written file (bench/load.py hit it). Here the file is written under a
temporary name and renamed into place (`hub.files.write_atomic`), in a folder named by its content,
which Gradio's `delete_cache` cleans like its own.
"""
from __future__ import annotations

import hashlib
import io
from pathlib import Path

from PIL import Image


def png(image: Image.Image, name: str = "overlay") -> str:
    """Save `image` as `<sha256 of its PNG>/<name>.png` in Gradio's cache (once) and return the path."""
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return file(buf.getvalue(), f"{name}.png")


def file(data: bytes | str, name: str) -> str:
    """Save `data` (text is UTF-8) as `<sha256 of it>/<name>` in Gradio's cache (once) and return the path."""
    from gradio.utils import get_upload_folder

    from hub.files import write_atomic

    data = data.encode() if isinstance(data, str) else data
    path = Path(get_upload_folder()) / hashlib.sha256(data).hexdigest() / name
    if not path.exists():
        write_atomic(path, data)
    return str(path)
