"""Every error type of the project, and the one function that turns a Hub failure into a message.

Each error's message is one line that names the file, option or repo and what to do; the shells
(CLIs, app) print it as it is, never a traceback. Tokens never appear in a message.
"""
from __future__ import annotations


class ImageError(ValueError):
    """An input that cannot be used as an image; the message says why."""


class DataError(ValueError):
    """A dataset that cannot be trained on; the message says what to fix."""


class ModelLoadError(ValueError):
    """A model folder or repo that cannot be loaded safely; the message says why and what to do."""


class PublishError(RuntimeError):
    """A push, pull or deploy that could not be done; the message says whether anything changed remotely."""


class ConfigError(ValueError):
    """An invalid combination of training options; the message names the flag."""


class WeightsError(RuntimeError):
    """Initial weights could not be obtained; the message says how to train without them."""


class OutputError(OSError):
    """The output folder cannot be written; the previous model folder is untouched."""


class AnnotationError(ValueError):
    """Expert annotations (boxes, masks) that cannot be matched to images or read; the message names the file."""


class DeviceError(ValueError):
    """A --device that names no device, or one this machine does not have; the message says what to pass."""


class StudyError(ValueError):
    """A study (many slices) that cannot be answered: too many files, a zip-slip, mixed sizes, missing slices, ...;
    the message names the file or study and says what to send instead (`hub.study`)."""


class UserError(ValueError):
    """A request the app cannot serve; the message is shown to the person who sent it, as it is."""


def network_errors() -> tuple[type[BaseException], ...]:
    """Exception types that mean "the Hub could not be reached" (the transport's and the OS's)."""
    errors: list[type[BaseException]] = [ConnectionError, TimeoutError]
    try:  # the transport library of huggingface_hub >= 1.0
        import httpx2

        errors.append(httpx2.TransportError)
    except ImportError:  # pragma: no cover - other client versions
        pass
    return tuple(errors)


def download_errors() -> tuple[type[BaseException], ...]:
    """Exception types a failed download from the Hub raises: its HTTP answers (not found, gated, 5xx), an entry
    that is neither there nor cached, offline mode, and an unreachable Hub. `load_error` words each of them."""
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError, OfflineModeIsEnabled

    return HfHubHTTPError, LocalEntryNotFoundError, OfflineModeIsEnabled, *network_errors()


def hub_error(exc: BaseException, repo_id: str, revision: str | None = None,
              committed: bool = False) -> PublishError:
    """A plain one-line PublishError for a failed Hub call (no token, no traceback).

    `committed` says whether a commit already landed before the failure, so the message never
    claims "nothing was committed" when something was.
    """
    from huggingface_hub.errors import (
        HfHubHTTPError,
        LocalTokenNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    nothing = "" if committed else "; nothing was committed"
    if isinstance(exc, RevisionNotFoundError):
        return PublishError(f"{repo_id}: revision '{revision}' not found")
    if isinstance(exc, RepositoryNotFoundError):
        return PublishError(f"{repo_id}: repository not found, or your token cannot see it")
    if isinstance(exc, LocalTokenNotFoundError):
        return PublishError("no Hugging Face token: set HF_TOKEN or run `hf auth login`")
    if isinstance(exc, HfHubHTTPError):
        status = getattr(exc.response, "status_code", None)
        if status == 401:
            return PublishError("the Hub rejected the token (HTTP 401): it is invalid or expired; "
                                "set a valid HF_TOKEN or run `hf auth login`")
        if status == 403:
            return PublishError(f"{repo_id}: your token has no write access to this repository (HTTP 403); "
                                "use a token with the 'write' role, or push to a repo you own")
        if status is not None and status >= 500:
            return PublishError(f"{repo_id}: the Hub failed (HTTP {status}){nothing}, try again")
        return PublishError(f"{repo_id}: the Hub refused the request (HTTP {status})")
    if isinstance(exc, network_errors()):
        return PublishError(f"{repo_id}: cannot reach the Hub ({type(exc).__name__}){nothing}. "
                            "Check the network (and HF_ENDPOINT), then run the same command again")
    return PublishError(f"{repo_id}: {type(exc).__name__}: {exc}")


def load_error(exc: BaseException, repo_id: str, revision: str | None = None) -> ModelLoadError:
    """A plain one-line ModelLoadError for a failed download of `repo_id@revision` (no token, no traceback)."""
    from huggingface_hub.errors import (
        EntryNotFoundError,
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    where = f"{repo_id}@{revision or 'main'}"
    if isinstance(exc, GatedRepoError):  # before its base class, RepositoryNotFoundError
        return ModelLoadError(f"{repo_id}: gated repository; request access on the Hub and log in")
    if isinstance(exc, RepositoryNotFoundError):
        return ModelLoadError(f"{repo_id}: repository not found on the Hub (or it is private and no valid token "
                              "was given: set HF_TOKEN, a Space secret on a Space, or run `hf auth login`)")
    if isinstance(exc, RevisionNotFoundError):
        return ModelLoadError(f"{where}: revision '{revision}' not found in {repo_id}; "
                              "list its tags and branches with `huggingface_hub.list_repo_refs`")
    if isinstance(exc, (LocalEntryNotFoundError, OfflineModeIsEnabled)) or isinstance(exc, network_errors()):
        return ModelLoadError(f"{where}: the Hub cannot be reached and this revision is not in the local cache; "
                              "check the network (and HF_ENDPOINT), or load a revision you downloaded before")
    if isinstance(exc, EntryNotFoundError):
        return ModelLoadError(f"{where}: missing file ({exc})")
    if isinstance(exc, HfHubHTTPError):
        status = getattr(getattr(exc, "response", None), "status_code", "?")
        return ModelLoadError(f"{where}: the Hub answered HTTP {status}; try again later")
    return ModelLoadError(f"{where}: {type(exc).__name__}: {exc}")
