"""Write a file so that readers see the old content or the new, never a half-written file.

The one home of `os.replace` in the project: the app's PNG outputs, the explain CLI's metrics and
card, training checkpoints and the model folder's files all land through here. A unique temp name
beside the target (same file system, so the rename is atomic) means concurrent writers never
share one; `fsync=True` also survives a power cut, which only long-lived files (checkpoints) need.
"""
from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Union

Writer = Callable[[Path], None]  # writes the content to the path it is given


def write_atomic(path: str | os.PathLike, data: Union[bytes, str, Writer], fsync: bool = False) -> Path:
    """Write `data` (bytes, text, or a function that writes a given path) to a temp file, then rename it
    over `path`; the temp file is removed on any failure."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        if isinstance(data, str):
            tmp.write_text(data)
        elif isinstance(data, (bytes, bytearray)):
            tmp.write_bytes(data)
        else:
            data(tmp)
        if fsync:
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def move_into_place(src: str | os.PathLike, dst: str | os.PathLike) -> Path:
    """Rename a finished file over `dst` (same file system): readers see the old file or the new one."""
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    os.replace(src, dst)
    return dst


def stale_temp_files(path: str | os.PathLike) -> list[Path]:
    """Temp files that `write_atomic(path, ...)` calls killed mid-write left beside `path`."""
    path = Path(path)
    return sorted(path.parent.glob(f".{path.name}.*.tmp"))
