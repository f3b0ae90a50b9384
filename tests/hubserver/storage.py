"""Repositories on disk: content-addressed blobs, immutable commit files, mutable ref files.

Everything lives under the server's `root`, so a restarted server (same port, same root) sees the same repos. A
commit is published atomically: blobs first, then the commit file, then the ref file is swapped with `os.replace`;
a reader (or a server killed in between) always sees the old commit or the new one, never a mix.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
import uuid
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path

from .errors import HubError

TYPE_PREFIX = {"model": "", "dataset": "datasets/", "space": "spaces/"}  # URL prefix of each repo type
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")  # a namespace or a repo name
REF_NAME_RE = re.compile(r"^[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*$")
SHA256_RE = re.compile(r"^[0-9a-f]{64}$")


def git_blob_sha1(data: bytes) -> str:
    """Git object id of a blob: what the Hub reports as `oid` / ETag for regular files."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def lfs_pointer(oid: str, size: int) -> bytes:
    """The git-lfs pointer file that git stores in place of an LFS file."""
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{oid}\nsize {size}\n".encode()


def now_iso() -> str:
    """Timestamp in the Hub's format ('2024-01-31T12:00:00.000Z'), parsed by the client's `parse_datetime`."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def atomic_write(path: Path, data: bytes) -> None:
    """Write `data` to `path` so that readers see either the old or the new content, never a partial file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


class Repo:
    """One repository on disk.

    Layout under `root/repos/{type}s/{namespace}/{name}/`:
        repo.json                metadata (private, sdk, Space variables and hardware, ...)
        secrets.json             Space secret values: a file of their own so no metadata endpoint can leak them
        blobs/ab/<sha>           content, keyed by git sha1 (regular files) or sha256 (LFS files)
        commits/<id>.json        immutable: {id, parent, message, description, author, date, files}
        refs/heads/<branch>, refs/tags/<tag>, refs/pr/<n>   one commit id each, replaced atomically

    A commit's `files` maps each path to {"sha", "size", "lfs"}.
    """

    def __init__(self, root: Path, repo_type: str, repo_id: str) -> None:
        self.type, self.id = repo_type, repo_id
        self.dir = root / "repos" / f"{repo_type}s" / repo_id

    @property
    def url_path(self) -> str:
        """Path of the repo on the website / git side, e.g. `spaces/org/name`."""
        return TYPE_PREFIX[self.type] + self.id

    def exists(self) -> bool:
        """Whether the repo was created (repo.json is written last)."""
        return (self.dir / "repo.json").is_file()

    def meta(self) -> dict:
        """Repo metadata."""
        return json.loads((self.dir / "repo.json").read_text())

    def save_meta(self, meta: dict) -> None:
        """Replace repo metadata atomically."""
        atomic_write(self.dir / "repo.json", json.dumps(meta, indent=1).encode())

    def secrets(self) -> dict[str, dict]:
        """Space secrets: {key: {value, description, updatedAt}}."""
        path = self.dir / "secrets.json"
        return json.loads(path.read_text()) if path.is_file() else {}

    def save_secrets(self, secrets: dict[str, dict]) -> None:
        """Replace the Space secrets atomically."""
        atomic_write(self.dir / "secrets.json", json.dumps(secrets, indent=1).encode())

    # ---- blobs -----------------------------------------------------------------------------------------------------

    def blob_path(self, sha: str) -> Path:
        """Where the content with this sha lives."""
        return self.dir / "blobs" / sha[:2] / sha

    def has_blob(self, sha: str, size: int | None = None) -> bool:
        """Whether the content is stored (with the expected size, if given)."""
        path = self.blob_path(sha)
        return path.is_file() and (size is None or path.stat().st_size == size)

    def store_regular(self, data: bytes) -> dict:
        """Store a regular (non-LFS) file's content (idempotent) and return its commit entry."""
        sha = git_blob_sha1(data)
        if not self.has_blob(sha):
            atomic_write(self.blob_path(sha), data)
        return {"sha": sha, "size": len(data), "lfs": False}

    def put_blob_stream(self, oid: str, chunks: Iterable[bytes]) -> int:
        """Store an LFS upload, checking that its sha256 is `oid`. Returns the size; nothing is kept on mismatch."""
        path = self.blob_path(oid)
        path.parent.mkdir(parents=True, exist_ok=True)
        digest, size = hashlib.sha256(), 0
        with tempfile.NamedTemporaryFile(dir=path.parent, prefix=".upload-", delete=False) as tmp:
            try:
                for chunk in chunks:
                    digest.update(chunk)
                    tmp.write(chunk)
                    size += len(chunk)
            except BaseException:  # a client gone mid-upload leaves no half-written temp file behind
                os.unlink(tmp.name)
                raise
        if digest.hexdigest() != oid:
            os.unlink(tmp.name)
            raise HubError(400, "BadDigest: the sha256 of the uploaded content does not match the object id")
        os.replace(tmp.name, path)
        return size

    # ---- commits ---------------------------------------------------------------------------------------------------

    def commit(self, cid: str) -> dict:
        """Read a commit."""
        return json.loads((self.dir / "commits" / f"{cid}.json").read_text())

    def write_commit(self, parent: str | None, message: str, description: str, files: dict, author: str) -> dict:
        """Write a new immutable commit (not yet referenced by any ref) and return it."""
        commit = {"parent": parent, "message": message, "description": description, "author": author,
                  "date": now_iso(), "files": files}
        # Like git, the id hashes the content (+ a nonce so two identical commits in one millisecond differ).
        payload = json.dumps({**commit, "nonce": uuid.uuid4().hex}, sort_keys=True).encode()
        commit = {"id": hashlib.sha1(payload).hexdigest(), **commit}
        atomic_write(self.dir / "commits" / f"{commit['id']}.json", json.dumps(commit, indent=1).encode())
        return commit

    def history(self, cid: str) -> Iterator[dict]:
        """Commits reachable from `cid`, newest first."""
        while cid:
            commit = self.commit(cid)
            yield commit
            cid = commit["parent"]

    # ---- refs ------------------------------------------------------------------------------------------------------

    def ref(self, name: str) -> str | None:
        """Commit id a full ref name ('refs/heads/main') points to, or None."""
        if ".." in name or not REF_NAME_RE.match(name):
            return None
        path = self.dir / name
        return path.read_text().strip() if path.is_file() else None

    def set_ref(self, name: str, cid: str) -> None:
        """Point a ref at a commit: the single atomic step that publishes a commit."""
        atomic_write(self.dir / name, cid.encode())

    def refs(self, kind: str) -> dict[str, str]:
        """{short name: commit id} for kind 'heads', 'tags' or 'pr'."""
        base = self.dir / "refs" / kind
        if not base.is_dir():
            return {}
        return {
            str(path.relative_to(base).as_posix()): path.read_text().strip()
            for path in sorted(base.rglob("*"))
            if path.is_file() and not path.name.startswith(".")
        }

    def resolve(self, rev: str) -> str | None:
        """Commit id for a branch, tag, full ref ('refs/pr/1') or (possibly abbreviated) commit id."""
        for name in ([rev] if rev.startswith("refs/") else []) + [f"refs/heads/{rev}", f"refs/tags/{rev}"]:
            if (cid := self.ref(name)) is not None:
                return cid
        if re.fullmatch(r"[0-9a-f]{7,40}", rev):
            matches = [p.stem for p in (self.dir / "commits").glob(f"{rev}*.json")]
            if len(matches) == 1:
                return matches[0]
        return None

    def branch_ref(self, rev: str) -> str | None:
        """Full ref name if `rev` names something that can receive commits (a branch or a PR ref)."""
        for name in ([rev] if rev.startswith(("refs/heads/", "refs/pr/")) else []) + [f"refs/heads/{rev}"]:
            if self.ref(name) is not None:
                return name
        return None

    def lfs_patterns(self, files: dict) -> list[str]:
        """Patterns marked `filter=lfs` in the .gitattributes of a commit's file set."""
        entry = files.get(".gitattributes")
        if entry is None or entry["lfs"]:
            return []
        lines = self.blob_path(entry["sha"]).read_text().splitlines()
        return [line.split()[0] for line in lines if "filter=lfs" in line.split()[1:]]
