"""python -m hub: push a model folder to the Hub, pull a revision back, deploy the app to a Space.

    python -m hub push runs/demo/model org/her2-resnet50 --tag auto
    python -m hub pull org/her2-resnet50@v2 ./her2-v2
    python -m hub deploy-space org/her2-demo --model org/her2-resnet50 --revision v2
"""
from __future__ import annotations

import argparse
import sys


def parser() -> argparse.ArgumentParser:
    """Sub-commands and their options."""
    p = argparse.ArgumentParser(prog="python -m hub", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("push", help="upload a model folder as one commit (token from HF_TOKEN or `hf auth login`)")
    s.add_argument("folder", help="model folder written by `python -m train`")
    s.add_argument("repo_id", help="ORG/NAME on the Hub (created if missing)")
    s.add_argument("--tag", metavar="vN|auto", help="tag the commit; auto = the next free vN")
    s.add_argument("--branch", help="commit to this branch instead of main (created if missing)")
    s.add_argument("--create-pr", action="store_true", help="open a pull request instead of committing directly")
    s.add_argument("--private", action="store_true", help="create the repo as private")
    s.add_argument("--message", help="commit message")
    s = sub.add_parser("pull", help="download a revision into a folder")
    s.add_argument("repo", metavar="REPO_ID[@REV]", help="e.g. org/name@v2 (default revision: main)")
    s.add_argument("out", help="folder to write")
    s = sub.add_parser("deploy-space", help="upload the Gradio app (space/ + hub/) to a Space as one commit and "
                                            "point it at a model revision (Space variables MODEL_ID, MODEL_REVISION)")
    s.add_argument("space_id", help="ORG/NAME of the Space (created if missing)")
    s.add_argument("--model", required=True, metavar="REPO_ID", help="the model repo the Space serves")
    s.add_argument("--revision", default="main", help="tag, branch or commit to serve; pin a tag such as v2")
    s.add_argument("--private", action="store_true", help="create the Space as private")
    return p


def main(argv: list[str] | None = None) -> int:
    """Run one sub-command; expected failures print one line and exit 2."""
    args = parser().parse_args(argv)
    from hub.publish import PublishError, pull, push

    try:
        if args.command == "deploy-space":
            from hub.deploy import deploy_space

            result = deploy_space(args.space_id, args.model, args.revision, private=args.private)
            print(f"deployed {len(result.files)} files to {result.space_url} in one commit: {result.commit_url}")
            print(f"serving {args.model}@{args.revision} (Space variables MODEL_ID, MODEL_REVISION)")
        elif args.command == "push":
            result = push(args.folder, args.repo_id, tag=args.tag, branch=args.branch, create_pr=args.create_pr,
                          private=args.private, message=args.message)
            print(f"pushed {args.folder} -> {result.commit_url}")
            if result.tag:
                print(f"tagged {result.tag}")
            if result.pr_url:
                print(f"pull request: {result.pr_url}")
            print("load it with:\n" + result.snippet())
        else:
            repo, _, rev = args.repo.partition("@")
            folder, sha = pull(repo, args.out, revision=rev or None)
            print(f"pulled {repo}@{rev or 'main'} (commit {sha}) into {folder}")
    except PublishError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
