"""Deploy the Gradio app to a Hugging Face Space that serves one model revision.

A Space can only import what is uploaded to it, so the upload is `space/*` at the Space root plus
the `hub/` package beside it (nothing else: no training code, tests or data), as ONE commit; files
of an earlier deploy that are no longer shipped are deleted in that same commit. The model is not
copied: the Space variables MODEL_ID / MODEL_REVISION point the app at it, and the README's
`models:` front matter links the Space to it on the Hub.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from hub.loading import is_repo_id
from hub.errors import PublishError, hub_error
from hub.publish import resolve_token

ROOT = Path(__file__).resolve().parent.parent
SKIP_PARTS = ("__pycache__",)
SKIP_SUFFIXES = (".pyc", ".pyo")
KEEP_REMOTE = (".gitattributes",)
_MODELS_BLOCK = re.compile(r"^models:\n(?:[ \t]+-.*\n)*", re.MULTILINE)


@dataclass(frozen=True)
class DeployResult:
    """What a deploy made: the Space commit, its file list and the variables set."""

    space_id: str
    commit: str
    commit_url: str
    space_url: str
    files: list[str] = field(default_factory=list)
    variables: dict[str, str] = field(default_factory=dict)


def _shipped(folder: Path) -> list[Path]:
    """Files under `folder`, minus caches, bytecode and hidden files."""
    return sorted(p for p in folder.rglob("*") if p.is_file()
                  and not any(part in SKIP_PARTS or part.startswith(".") for part in p.relative_to(folder).parts)
                  and p.suffix not in SKIP_SUFFIXES)


def space_files(root: str | Path = ROOT) -> dict[str, Path]:
    """Path in the Space -> local file: `space/*` at the Space root, `hub/**` under `hub/`."""
    root = Path(root)
    files = {p.relative_to(root / "space").as_posix(): p for p in _shipped(root / "space")}
    files.update({p.relative_to(root).as_posix(): p for p in _shipped(root / "hub")})
    if "app.py" not in files or "README.md" not in files:
        raise PublishError(f"{root / 'space'} has no app.py or README.md; run from a complete checkout")
    return files


def space_readme(text: str, model: str) -> str:
    """The Space README with its front matter's `models:` list set to `model`."""
    if not _MODELS_BLOCK.search(text):
        raise PublishError("space/README.md front matter has no 'models:' list to point at the model")
    return _MODELS_BLOCK.sub(f"models:\n  - {model}\n", text, count=1)


def deploy_space(space_id: str, model: str, revision: str = "main", token: str | None = None,
                 private: bool = False) -> DeployResult:
    """Upload the app to `space_id` as one commit and point it at `model@revision` (Space variables)."""
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi

    if not is_repo_id(space_id):
        raise PublishError(f"{space_id!r} is not a Space id of the form 'org/name'")
    if not is_repo_id(model):
        raise PublishError(f"--model must be a Hub repo id of the form 'org/name' (a Space cannot read a local "
                           f"folder), got {model!r}; push the folder first with `python -m hub push`")
    files = space_files()
    api = HfApi(token=resolve_token(token))
    try:
        info = api.model_info(model, revision=revision)
        if "config.json" not in {s.rfilename for s in info.siblings or []}:
            raise PublishError(f"{model}@{revision} has no config.json; it is not a model pushed by `python -m hub push`")
    except PublishError:
        raise
    except Exception as exc:
        raise PublishError(f"not deploying: model {hub_error(exc, model, revision)}") from None
    readme = space_readme(files.pop("README.md").read_text(encoding="utf-8"), model)
    ops = [CommitOperationAdd(path_in_repo=rel, path_or_fileobj=str(path)) for rel, path in sorted(files.items())]
    ops.append(CommitOperationAdd(path_in_repo="README.md", path_or_fileobj=readme.encode("utf-8")))
    shipped = sorted([*files, "README.md"])
    variables = {"MODEL_ID": model, "MODEL_REVISION": revision}
    try:
        url = api.create_repo(space_id, repo_type="space", space_sdk="gradio", private=private, exist_ok=True)
        remote = set(api.list_repo_files(space_id, repo_type="space"))
        ops += [CommitOperationDelete(path_in_repo=rel) for rel in sorted(remote - set(shipped) - set(KEEP_REMOTE))]
        commit = api.create_commit(space_id, repo_type="space", operations=ops,
                                   commit_message=f"Deploy app for {model}@{revision}")
    except Exception as exc:
        raise hub_error(exc, space_id) from None
    try:  # after the commit, so a failed upload leaves the running Space untouched; setting them restarts it
        for key, value in variables.items():
            api.add_space_variable(space_id, key, value)
    except Exception as exc:
        raise PublishError(f"the app was committed ({commit.commit_url}) but setting {key} failed "
                           f"({hub_error(exc, space_id)}); set MODEL_ID={model} and MODEL_REVISION={revision} "
                           "in the Space settings, or run the same command again") from None
    return DeployResult(space_id=space_id, commit=commit.oid, commit_url=commit.commit_url,
                        space_url=str(url), files=shipped, variables=variables)
