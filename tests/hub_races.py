"""A commit race lost on every try, against the test Hub: used by the `hub push` and `space deploy` race tests."""
from __future__ import annotations

import os
import threading

import pytest


def someone_always_commits_first(monkeypatch: pytest.MonkeyPatch, repo_id: str, repo_type: str = "model") -> None:
    """Before each of our `create_commit` calls, another client commits `other.bin` to the same repo, so the
    parent commit we computed is stale every time (the Hub answers 412 for it)."""
    from huggingface_hub import HfApi

    create_commit = HfApi.create_commit
    inside = threading.local()  # the other client's own commit must not trigger another one

    def other_commits_first(self, *args, **kwargs):
        if not getattr(inside, "other", False):
            inside.other = True
            try:
                HfApi().upload_file(path_or_fileobj=os.urandom(8), path_in_repo="other.bin", repo_id=repo_id,
                                    repo_type=repo_type)
            finally:
                inside.other = False
        return create_commit(self, *args, **kwargs)

    monkeypatch.setattr(HfApi, "create_commit", other_commits_first)
