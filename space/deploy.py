"""Deploy the Gradio app to a Hugging Face Space that serves one model revision.

A Space can only import what is uploaded to it, so the bundle is the `space/` and `hub/` packages,
a two-line `app.py` at the root (Spaces run `python app.py` from the repo root, which puts both
packages on the import path), and this folder's README.md (front matter) and requirements.txt at
the root. Nothing else: no training code, tests or data. It goes up as ONE commit; files of an
earlier deploy that are no longer shipped are deleted in that same commit. The model is not
copied: the Space variables MODEL_ID / MODEL_REVISION point the app at it, and the README's
`models:` front matter links the Space to it on the Hub.
"""
from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import hub
from hub.errors import PublishError, hub_error
from hub.loading import is_repo_id
from hub.publish import resolve_token

SPACE_DIR = Path(__file__).resolve().parent          # this package
HUB_DIR = Path(hub.__file__).resolve().parent        # the package it needs
SPACE_ROOT_FILES = ("README.md", "requirements.txt")  # go to the Space root, not under space/
ENTRY = "from space.__main__ import main\n\nmain()\n"  # the Space's app.py
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


def space_files(space_dir: Path = SPACE_DIR, hub_dir: Path = HUB_DIR) -> dict[str, Path]:
    """Path in the Space -> local file: space/**, hub/**, and README.md + requirements.txt at the root."""
    files = {name: space_dir / name for name in SPACE_ROOT_FILES}
    missing = [name for name, path in files.items() if not path.is_file()]
    if missing:
        raise PublishError(f"{space_dir} has no {', '.join(missing)}; deploy from a complete checkout")
    for package in (space_dir, hub_dir):
        files.update({f"{package.name}/{p.relative_to(package).as_posix()}": p for p in _shipped(package)
                      if p.parent != space_dir or p.name not in SPACE_ROOT_FILES})
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
            raise PublishError(f"{model}@{revision} has no config.json; "
                               "it is not a model pushed by `python -m hub push`")
    except PublishError:
        raise
    except Exception as exc:  # noqa: BLE001 - any Hub or transport failure becomes one plain message
        raise PublishError(f"not deploying: model {hub_error(exc, model, revision)}") from None
    readme = space_readme(files.pop("README.md").read_text(encoding="utf-8"), model)
    ops = [CommitOperationAdd(path_in_repo=rel, path_or_fileobj=str(path)) for rel, path in sorted(files.items())]
    ops.append(CommitOperationAdd(path_in_repo="README.md", path_or_fileobj=readme.encode("utf-8")))
    ops.append(CommitOperationAdd(path_in_repo="app.py", path_or_fileobj=ENTRY.encode("utf-8")))
    shipped = sorted([*files, "README.md", "app.py"])
    variables = {"MODEL_ID": model, "MODEL_REVISION": revision}
    try:
        url = api.create_repo(space_id, repo_type="space", space_sdk="gradio", private=private, exist_ok=True)
        remote = set(api.list_repo_files(space_id, repo_type="space"))
        ops += [CommitOperationDelete(path_in_repo=rel) for rel in sorted(remote - set(shipped) - set(KEEP_REMOTE))]
        commit = api.create_commit(space_id, repo_type="space", operations=ops,
                                   commit_message=f"Deploy app for {model}@{revision}")
    except Exception as exc:  # noqa: BLE001 - any Hub or transport failure becomes one plain message
        raise hub_error(exc, space_id) from None
    try:  # after the commit, so a failed upload leaves the running Space untouched; setting them restarts it
        for key, value in variables.items():
            api.add_space_variable(space_id, key, value)
    except Exception as exc:  # noqa: BLE001 - any Hub or transport failure becomes one plain message
        raise PublishError(f"the app was committed ({commit.commit_url}) but setting {key} failed "
                           f"({hub_error(exc, space_id)}); set MODEL_ID={model} and MODEL_REVISION={revision} "
                           "in the Space settings, or run the same command again") from None
    return DeployResult(space_id=space_id, commit=commit.oid, commit_url=commit.commit_url,
                        space_url=str(url), files=shipped, variables=variables)


def parser() -> argparse.ArgumentParser:
    """Options of `python -m space deploy`."""
    p = argparse.ArgumentParser(prog="python -m space deploy", description=__doc__.splitlines()[0])
    p.add_argument("space_id", help="ORG/NAME of the Space (created if missing)")
    p.add_argument("--model", required=True, metavar="REPO_ID", help="the model repo the Space serves")
    p.add_argument("--revision", default="main", help="tag, branch or commit to serve; pin a tag such as v2")
    p.add_argument("--private", action="store_true", help="create the Space as private")
    return p


def main(argv: list[str] | None = None) -> int:
    """Deploy; an expected failure prints one line and returns 2."""
    args = parser().parse_args(argv)
    try:
        result = deploy_space(args.space_id, args.model, args.revision, private=args.private)
    except PublishError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"deployed {len(result.files)} files to {result.space_url} in one commit: {result.commit_url}")
    print(f"serving {args.model}@{args.revision} (Space variables MODEL_ID, MODEL_REVISION)")
    return 0
