"""Deploy the Gradio app to a Hugging Face Space that serves one model revision.

A Space can only import what is uploaded to it, so the bundle is the `space/` and `hub/` packages,
a two-line `app.py` at the root (Spaces run `python app.py` from the repo root, which puts both
packages on the import path), and this folder's README.md (front matter) and requirements.txt at
the root. Only what git has committed goes up (`git archive HEAD`): no edits in progress, no
generated or ignored files, no training code, tests or data. It goes up as ONE commit, made on the
Space's head as read (`parent_commit`): every other file (but .gitattributes) is deleted in that same
commit, and if another commit lands first the Hub refuses it (412), so the deploy reads the head again
and recomputes its deletions (at most COMMIT_ATTEMPTS tries). The model is not copied: the Space
variables MODEL_ID / MODEL_REVISION point the app at it, the README's `models:` front matter links the
Space to it, and for a public model `preload_from_hub` has the Space's build download its files at the
deployed commit.

A new Space is created with its variables, secrets and hardware in the same call, so its first
build already knows which model to serve. Its hardware, unless `--hardware` says otherwise, is
ZeroGPU: since 2026-07 a Gradio Space needs a paid plan (PRO, or Team / Enterprise for an
organization) except on ZeroGPU, where a free personal account may host 2; whoami tells which plan the
namespace has, for the note printed, and a refusal (HTTP 402) is one line that names the rule. A private
model needs a token on the Space: the deployer's token is stored as the Space secret HF_TOKEN unless
`--no-token-secret`. The Space variable MAX_BATCH_SIZE=1 turns /classify batching off (it measured
0.88-0.94x on CPU, and was never measured faster anywhere); one the Space already has is kept.
"""
from __future__ import annotations

import argparse
import io
import re
import subprocess
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

from hub.cli import run_command
from hub.errors import PublishError, hub_error
from hub.loading import is_repo_id
from hub.publish import COMMIT_ATTEMPTS, files_at, holds_exactly, http_status, is_stale, moved_on, resolve_token

CHECKOUT = Path(__file__).resolve().parents[1]  # the git checkout that holds space/ and hub/
GIT_TIMEOUT = 120.0  # seconds for one git call; `git archive` of space/ and hub/ takes well under one
PACKAGES = ("space", "hub")
SPACE_ROOT_FILES = ("README.md", "requirements.txt")  # space/X goes to the Space root as X
ENTRY = "from space.__main__ import main\n\nmain()\n"  # the Space's app.py
KEEP_REMOTE = (".gitattributes",)
TOKEN_SECRET = "HF_TOKEN"  # huggingface_hub reads the token from this environment variable
ZERO_GPU = "zero-a10g"  # the Hub's name of ZeroGPU hardware (huggingface_hub's SpaceHardware.ZERO_A10G)
# A new Space's hardware when --hardware is not given: the one a free personal account may create a Gradio Space
# on, and one PRO accounts and paid organizations may use too (free to host, a GPU for each call).
DEFAULT_HARDWARE = ZERO_GPU
HUB_DEFAULT_HARDWARE = "cpu-basic"  # what the Hub gives a Space created without one
CPU_HARDWARE = ("cpu-basic", "cpu-upgrade")
BATCHING = "MAX_BATCH_SIZE"  # the app's /classify batching; "1" (off) unless the Space already sets it
# PyPI's Linux torch wheels are CUDA builds that pull in ~3 GB of CUDA libraries; a CPU Space needs none of it.
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"
TORCH_PACKAGES = ("torch", "torchvision")
_MODELS_BLOCK = re.compile(r"^models:\n(?:[ \t]+-.*\n)*", re.MULTILINE)
_PRELOAD_BLOCK = re.compile(r"^preload_from_hub:\n(?:[ \t]+-.*\n)*", re.MULTILINE)
PRELOADED = ("config.json", "model.safetensors")  # what the app downloads to serve a model (hub/loading.py)
PLAN_RULE = ("a Gradio Space needs a paid plan (PRO for a personal account, Team or Enterprise for an organization), "
             "except on ZeroGPU, where a free personal account may host 2")
_PIN = re.compile(r"^(?P<name>[A-Za-z0-9_.\-]+)==(?P<version>[^\s#;+]+)(?P<rest>.*)$")


@dataclass(frozen=True)
class DeployResult:
    """What a deploy made: the Space commit, its file list, the variables, hardware and secrets set."""

    space_id: str
    commit: str
    commit_url: str
    space_url: str
    source_commit: str  # the commit of space/ and hub/ that was shipped
    hardware: str
    created: bool
    files: list[str] = field(default_factory=list)
    variables: dict[str, str] = field(default_factory=dict)
    secrets: list[str] = field(default_factory=list)  # names only: values are never kept or shown
    model_private: bool = False
    left_out: list[str] = field(default_factory=list)  # uncommitted paths not shipped (--allow-dirty)
    preload: str | None = None  # the README's preload_from_hub entry (public models only)
    notes: list[str] = field(default_factory=list)  # what the account's plan means for this Space


@dataclass(frozen=True)
class Plan:
    """The plan of the namespace a Space goes to, as whoami-v2 tells it: the user's own (PRO or free, `isPro`), one
    of the user's organizations (whose plan whoami does not tell), or another namespace."""

    namespace: str
    kind: str  # "user", "org" or "other"
    pro: bool = False


def account_plan(api, namespace: str) -> Plan:
    """Whose namespace `namespace` is for the token's user, and whether that user is PRO."""
    me = api.whoami()
    if me.get("name") == namespace:
        return Plan(namespace, "user", bool(me.get("isPro")))
    if namespace in {org.get("name") for org in me.get("orgs") or []}:
        return Plan(namespace, "org")
    return Plan(namespace, "other")


def plan_notes(plan: Plan, hardware: str) -> list[str]:
    """What the namespace's plan means for a new Space on `hardware` (huggingface.co/docs/hub/spaces-zerogpu)."""
    if hardware != ZERO_GPU:
        return []
    quota = ("each call is paid by the visitor's daily ZeroGPU quota: 2 minutes without an account, 5 with a free "
             "one, 40 with PRO")
    if plan.kind == "user" and not plan.pro:
        return [f"ZeroGPU: a free account hosts at most 2 ZeroGPU Spaces (verified email, account older than 30 days; "
                f"PRO hosts 10); {quota}"]
    if plan.kind == "user":
        return [f"ZeroGPU: a PRO account hosts up to 10 ZeroGPU Spaces (--hardware cpu-basic or a GPU works on PRO "
                f"too); {quota}"]
    return [f"ZeroGPU: an organization hosts ZeroGPU Spaces on a Team or Enterprise plan (up to 50); {quota}"]


def plan_refused(exc: BaseException, space_id: str, hardware: str, plan: Plan | None, step: str) -> str:
    """One line for the Hub's 402 Payment Required on `step` (what it refused, on `hardware`): the Hub's words, the
    plan rule and the way out."""
    said = " ".join((getattr(exc, "server_message", None) or "").split())
    if plan is not None and plan.kind == "user" and not plan.pro and hardware != ZERO_GPU:
        fix = f"deploy with --hardware {ZERO_GPU} (the default for a new Space), or subscribe to PRO"
    elif plan is not None and plan.kind == "user" and not plan.pro:
        fix = ("a free account hosts at most 2 ZeroGPU Spaces, with a verified email and an account older than 30 "
               "days: delete one, or subscribe to PRO")
    elif plan is not None and plan.kind == "org":
        fix = f"{plan.namespace} needs a Team or Enterprise plan, or deploy to your own namespace"
    else:
        fix = f"check the plan of {space_id.split('/')[0]}"
    return (f"the Hub refused {step} (HTTP 402 Payment Required{': ' + said if said else ''}): {PLAN_RULE}; "
            f"{fix}")


def hardware_names() -> list[str]:
    """The Space hardware the Hub accepts, as huggingface_hub names it."""
    from huggingface_hub import SpaceHardware

    return [flavor.value for flavor in SpaceHardware]


def check_hardware(name: str | None) -> str | None:
    """`name` if it is a Space hardware (None stays None: keep the Space's own), else a one-line error."""
    if name is not None and name not in hardware_names():
        raise PublishError(f"--hardware {name!r} is not a Space hardware; choose one of {', '.join(hardware_names())}")
    return name


def _git(checkout: Path, *args: str) -> subprocess.CompletedProcess:
    """`git -C checkout args...`; git missing or hanging (a lock, a slow disk) is a PublishError before anything
    reaches the Hub."""
    try:
        return subprocess.run(["git", "-C", str(checkout), *args], capture_output=True, timeout=GIT_TIMEOUT)
    except FileNotFoundError:
        raise PublishError("git is not installed (or not on PATH): install git and deploy from a git checkout of "
                           "the repository; nothing was deployed") from None
    except subprocess.TimeoutExpired:
        raise PublishError(f"`git {args[0]}` in {checkout} took more than {GIT_TIMEOUT:g} s (a held lock or a slow "
                           "disk?); nothing was deployed, run the same command again") from None


def uncommitted(checkout: Path) -> list[str]:
    """Paths under space/ and hub/ that differ from HEAD (edited, added, deleted or untracked, not ignored)."""
    done = _git(checkout, "status", "--porcelain", "-z", "--", *PACKAGES)
    return sorted(entry[3:] for entry in done.stdout.decode().split("\0") if len(entry) > 3)


def committed_files(checkout: Path, allow_dirty: bool = False) -> tuple[dict[str, bytes], str, list[str]]:
    """({path: content} of space/ and hub/ at HEAD, HEAD's commit id, uncommitted paths left out); with
    uncommitted changes there, refuse unless `allow_dirty`."""
    head = _git(checkout, "rev-parse", "--verify", "HEAD")
    if head.returncode != 0:
        raise PublishError(f"{checkout} is not a git checkout with a commit; deploy from a clone of the repository "
                           "(only committed files are shipped)")
    changed = uncommitted(checkout)
    if changed and not allow_dirty:
        shown = ", ".join(changed[:5]) + (f" and {len(changed) - 5} more" if len(changed) > 5 else "")
        raise PublishError(f"uncommitted changes in space/ or hub/ ({shown}): commit them, or pass --allow-dirty "
                           "to deploy the last commit without them")
    archive = _git(checkout, "archive", "--format=tar", "HEAD", "--", *PACKAGES)
    if archive.returncode != 0:
        raise PublishError(f"git archive failed in {checkout}: {archive.stderr.decode().strip()}")
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        files = {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}
    return files, head.stdout.decode().strip(), changed


def requirements_for(text: str, hardware: str) -> str:
    """The Space's requirements.txt for `hardware`: as written (CUDA torch) on GPUs, CPU-only torch on CPUs."""
    if hardware not in CPU_HARDWARE:
        return text
    lines = [f"--extra-index-url {TORCH_CPU_INDEX}"]
    for line in text.splitlines():
        pin = _PIN.match(line.strip())
        if pin and pin["name"].lower() in TORCH_PACKAGES:
            line = f"{pin['name']}=={pin['version']}+cpu{pin['rest']}"
        lines.append(line)
    return "\n".join(lines) + "\n"


def preload_entry(model: str, commit: str, siblings: list[str]) -> str:
    """The `preload_from_hub` item that has the Space's build download the model at `commit`: its config and
    weights, and its examples (names with a space or a comma cannot be listed; the app downloads those itself)."""
    examples = [f for f in sorted(siblings) if f.startswith("examples/") and not (set(f) & {" ", ","})]
    return f"{model} {','.join([f for f in PRELOADED if f in siblings] + examples)} {commit}"


def space_readme(text: str, model: str, preload: str | None = None) -> str:
    """The Space README with its front matter's `models:` list set to `model`, and `preload_from_hub` set to
    `preload` (or removed, for a private model: the Hub cannot preload those)."""
    if not _MODELS_BLOCK.search(text):
        raise PublishError("space/README.md front matter has no 'models:' list to point at the model")
    text = _PRELOAD_BLOCK.sub("", text)
    block = f"models:\n  - {model}\n" + (f"preload_from_hub:\n  - {preload}\n" if preload else "")
    return _MODELS_BLOCK.sub(lambda _: block, text, count=1)


def bundle(files: dict[str, bytes], model: str, hardware: str, preload: str | None = None) -> dict[str, bytes]:
    """Path in the Space -> content: space/** and hub/**, README.md and requirements.txt at the root, app.py."""
    missing = [f"space/{name}" for name in SPACE_ROOT_FILES if f"space/{name}" not in files]
    if missing:
        raise PublishError(f"the commit has no {', '.join(missing)}; deploy from a complete checkout")
    shipped = {path: data for path, data in files.items() if path not in {f"space/{n}" for n in SPACE_ROOT_FILES}}
    shipped["README.md"] = space_readme(files["space/README.md"].decode("utf-8"), model, preload).encode("utf-8")
    shipped["requirements.txt"] = requirements_for(files["space/requirements.txt"].decode("utf-8"),
                                                   hardware).encode("utf-8")
    shipped["app.py"] = ENTRY.encode("utf-8")
    return shipped


def checked_model(api, model: str, revision: str):
    """`model_info` of `model@revision` (its commit, privacy and files), once it is a model the deployer can read."""
    try:
        info = api.model_info(model, revision=revision)
    except Exception as exc:  # noqa: BLE001 - any Hub or transport failure becomes one plain message
        raise PublishError(f"not deploying: model {hub_error(exc, model, revision)}") from None
    if "config.json" not in {s.rfilename for s in info.siblings or []}:
        raise PublishError(f"{model}@{revision} has no config.json; it is not a model pushed by `python -m hub push`")
    return info


def current_hardware(api, space_id: str) -> str:
    """The hardware an existing Space asked for (what a deploy without --hardware keeps)."""
    runtime = api.get_space_runtime(space_id)
    return str(runtime.requested_hardware or runtime.hardware or HUB_DEFAULT_HARDWARE)


def deploy_space(space_id: str, model: str, revision: str = "main", token: str | None = None,
                 private: bool = False, hardware: str | None = None, token_secret: bool = True,
                 allow_dirty: bool = False, checkout: Path | None = None) -> DeployResult:
    """Upload the committed app to `space_id` as one commit and point it at `model@revision`."""
    from huggingface_hub import HfApi

    if not is_repo_id(space_id):
        raise PublishError(f"{space_id!r} is not a Space id of the form 'org/name'")
    if not is_repo_id(model):
        raise PublishError(f"--model must be a Hub repo id of the form 'org/name' (a Space cannot read a local "
                           f"folder), got {model!r}; push the folder first with `python -m hub push`")
    check_hardware(hardware)
    files, source, left_out = committed_files(checkout or CHECKOUT, allow_dirty)
    token = resolve_token(token)
    api = HfApi(token=token)
    info = checked_model(api, model, revision)
    model_private = bool(info.private)
    preload = None if model_private else preload_entry(model, info.sha, [s.rfilename for s in info.siblings or []])
    variables = {"MODEL_ID": model, "MODEL_REVISION": revision}
    secrets = {TOKEN_SECRET: token} if model_private and token_secret else {}
    notes: list[str] = []
    plan = None
    try:
        created = not api.repo_exists(space_id, repo_type="space")
        if created or BATCHING not in api.get_space_variables(space_id):
            variables[BATCHING] = "1"
        if created:
            plan = account_plan(api, space_id.split("/")[0])
            hardware = hardware or DEFAULT_HARDWARE
            notes = plan_notes(plan, hardware)
        else:
            hardware = hardware or current_hardware(api, space_id)
        shipped = bundle(files, model, hardware, preload)
        url = (create_space(api, space_id, private, hardware, variables, secrets, plan) if created
               else f"{api.endpoint}/spaces/{space_id}")
    except PublishError:
        raise
    except Exception as exc:  # noqa: BLE001 - any Hub or transport failure becomes one plain message
        raise hub_error(exc, space_id) from None
    commit = commit_bundle(api, space_id, shipped, f"Deploy app {source[:12]} for {model}@{revision}")
    if not created:
        update_settings(api, space_id, variables, secrets, hardware, commit.commit_url)
    return DeployResult(space_id=space_id, commit=commit.oid, commit_url=commit.commit_url, space_url=str(url),
                        source_commit=source, hardware=hardware, created=created, files=sorted(shipped),
                        variables=variables, secrets=sorted(secrets), model_private=model_private,
                        left_out=left_out, preload=preload, notes=notes)


def commit_bundle(api, space_id: str, shipped: dict[str, bytes], message: str):
    """One commit on the Space's head as read that makes it hold exactly `shipped` (and .gitattributes); when
    another commit landed first (HTTP 412, or files added to an unchanged bundle), read the head again and
    recompute the deletions."""
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete

    for _ in range(COMMIT_ATTEMPTS):
        try:
            head = api.repo_info(space_id, repo_type="space").sha
            remote = files_at(api, space_id, head, repo_type="space")
        except Exception as exc:  # noqa: BLE001 - any Hub or transport failure becomes one plain message
            raise hub_error(exc, space_id) from None
        ops = [CommitOperationAdd(path_in_repo=rel, path_or_fileobj=data) for rel, data in sorted(shipped.items())]
        ops += [CommitOperationDelete(path_in_repo=rel) for rel in sorted(remote - set(shipped) - set(KEEP_REMOTE))]
        try:
            commit = api.create_commit(space_id, repo_type="space", operations=ops, commit_message=message,
                                       parent_commit=head)
            if commit.oid == head or holds_exactly(api, space_id, commit.oid, set(shipped), repo_type="space"):
                return commit
        except Exception as exc:  # noqa: BLE001 - any Hub or transport failure becomes one plain message
            if not is_stale(exc):
                raise hub_error(exc, space_id) from None
    raise moved_on(space_id, "main")


def create_space(api, space_id: str, private: bool, hardware: str, variables: dict[str, str],
                 secrets: dict[str, str], plan: Plan | None = None) -> str:
    """A new gradio Space with its hardware, variables and secrets in one call, so its first build has them."""
    try:
        return str(api.create_repo(space_id, repo_type="space", space_sdk="gradio", private=private,
                                   space_hardware=hardware,
                                   space_variables=[{"key": k, "value": v} for k, v in variables.items()],
                                   space_secrets=[{"key": k, "value": v} for k, v in secrets.items()]))
    except Exception as exc:  # noqa: BLE001 - the plan rule for a 402, any other failure as hub_error says it
        if http_status(exc) == 402:
            step = f"to create a Gradio Space on {hardware}"
            raise PublishError(f"{space_id}: {plan_refused(exc, space_id, hardware, plan, step)}; "
                               "nothing was created") from None
        raise


def update_settings(api, space_id: str, variables: dict[str, str], secrets: dict[str, str], hardware: str,
                    commit_url: str) -> None:
    """Variables, secrets and hardware of an existing Space, after the commit (a failed upload changes nothing)."""
    step = "setting its variables"
    try:
        for key, value in variables.items():
            api.add_space_variable(space_id, key, value)
        step = f"storing the secret {TOKEN_SECRET}"
        for key, value in secrets.items():
            api.add_space_secret(space_id, key, value)
        step = f"requesting the hardware {hardware}"
        if current_hardware(api, space_id) != hardware:
            api.request_space_hardware(space_id, hardware)
    except Exception as exc:  # noqa: BLE001 - any Hub or transport failure becomes one plain message
        if http_status(exc) == 402:
            refused = plan_refused(exc, space_id, hardware, None, f"the hardware {hardware} for {space_id}")
            raise PublishError(f"the app was committed ({commit_url}) but {refused}") from None
        raise PublishError(f"the app was committed ({commit_url}) but {step} failed "
                           f"({hub_error(exc, space_id, committed=True)}); run the same command again") from None


def parser() -> argparse.ArgumentParser:
    """Options of `python -m space deploy`."""
    p = argparse.ArgumentParser(prog="python -m space deploy", description=__doc__.splitlines()[0])
    p.add_argument("space_id", help="ORG/NAME of the Space (created if missing)")
    p.add_argument("--model", required=True, metavar="REPO_ID", help="the model repo the Space serves")
    p.add_argument("--revision", default="main", help="tag, branch or commit to serve; pin a tag such as v2")
    p.add_argument("--hardware", metavar="NAME",
                   help=f"Space hardware: {ZERO_GPU} (ZeroGPU), cpu-basic, t4-small, ... (default: {DEFAULT_HARDWARE} "
                        "for a new Space, the only one a free account may create a Gradio Space on; the Space's own "
                        "for an existing one)")
    p.add_argument("--private", action="store_true", help="create the Space as private")
    p.add_argument("--no-token-secret", dest="token_secret", action="store_false",
                   help=f"never store your token as the Space secret {TOKEN_SECRET} (a private model then needs one "
                        "set in the Space settings)")
    p.add_argument("--allow-dirty", action="store_true",
                   help="deploy the last commit even though space/ or hub/ has uncommitted changes (not shipped)")
    return p


def report(result: DeployResult, model: str, revision: str) -> list[str]:
    """What a deploy did, in lines for the terminal (never a token)."""
    lines = [f"deployed {len(result.files)} files (space/ and hub/ at commit {result.source_commit[:12]}) to "
             f"{result.space_url} in one commit: {result.commit_url}",
             f"serving {model}@{revision} on {result.hardware} (Space variables {', '.join(result.variables)})"]
    lines += [f"note: {note}" for note in result.notes]
    if result.preload:
        lines.append(f"the Space's build preloads {model} at commit {result.preload.rsplit(' ', 1)[1][:12]} "
                     "(preload_from_hub)")
    if result.left_out:
        lines.append(f"not shipped (uncommitted, --allow-dirty): {', '.join(result.left_out)}")
    if result.secrets:
        lines.append(f"{model} is private: your Hugging Face token is stored as the Space secret {TOKEN_SECRET} so "
                     "the Space can download it (a read-only token is safer: replace it in the Space settings, "
                     "or deploy with --no-token-secret)")
    elif result.model_private:
        lines.append(f"{model} is private and no token was stored (--no-token-secret): add a Space secret "
                     f"{TOKEN_SECRET} that can read it, or the app shows an error banner")
    return lines


def main(argv: list[str] | None = None) -> int:
    """Deploy; an expected failure prints one line and returns 2 (hub.cli's policy)."""
    args = parser().parse_args(argv)
    return run_command(lambda: deploy_and_report(args))


def deploy_and_report(args: argparse.Namespace) -> None:
    """The deploy the command line asks for, and what it did."""
    result = deploy_space(args.space_id, args.model, args.revision, private=args.private, hardware=args.hardware,
                          token_secret=args.token_secret, allow_dirty=args.allow_dirty)
    print("\n".join(report(result, args.model, args.revision)))
