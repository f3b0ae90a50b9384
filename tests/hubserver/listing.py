"""How files and folders of a commit are described to clients (/tree, `?blobs=true` repo info, preupload).

Regular files are git blobs (their oid is the git sha1 of the content); LFS files are git blobs of a pointer file,
with the real content's sha256 and size in an `lfs` block, which is what the client checks downloads against.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
from collections.abc import Iterable

from .storage import git_blob_sha1, lfs_pointer


def matches_any(path: str, patterns: Iterable[str]) -> bool:
    """gitattributes / gitignore matching: slash-less patterns match the basename at any depth."""
    basename = path.rsplit("/", 1)[-1]
    return any(fnmatch.fnmatchcase(path if "/" in p else basename, p.lstrip("/")) for p in patterns)


def tree_entry(path: str, entry: dict) -> dict:
    """A file as /tree describes it."""
    if not entry["lfs"]:
        return {"type": "file", "oid": entry["sha"], "size": entry["size"], "path": path}
    pointer = lfs_pointer(entry["sha"], entry["size"])
    return {
        "type": "file",
        "oid": git_blob_sha1(pointer),  # git sees the pointer file
        "size": entry["size"],
        "path": path,
        "lfs": {"oid": entry["sha"], "size": entry["size"], "pointerSize": len(pointer)},
    }


def folder_entry(path: str, files: dict) -> dict:
    """A folder as /tree describes it; its oid hashes what is inside, like a git tree id."""
    inside = sorted((p, e["sha"]) for p, e in files.items() if p.startswith(path + "/"))
    return {"type": "directory", "oid": hashlib.sha1(json.dumps(inside).encode()).hexdigest(), "size": 0, "path": path}


def folders_of(files: dict) -> set[str]:
    """Every folder implied by the file paths."""
    return {"/".join(p.split("/")[:i]) for p in files for i in range(1, p.count("/") + 1)}
