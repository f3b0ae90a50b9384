"""The error policy of the three command lines (python -m train, python -m hub, python -m space).

A failure the user can cause or meet (a bad option or input, no GPU, a full disk, a timeout, no network)
is one line on stderr, `error: ...`, and exit code 2; Ctrl-C is one line and exit code 130. Which
failures count as expected is decided here, once: every error of hub/errors.py, a plain ValueError
from an option check, an OSError (disk, permissions, missing files, sockets) and a diverged training
(FloatingPointError). Anything else is a bug, and its traceback is what the bug report needs.
"""
from __future__ import annotations

import errno
import sys
from collections.abc import Callable

from hub.errors import PublishError, WeightsError

FAILED = 2  # argparse's code for a usage error: one code for every expected failure
INTERRUPTED = 130  # 128 + SIGINT, what a shell reports for Ctrl-C
DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


def expected_errors() -> tuple[type[BaseException], ...]:
    """The exception types a command line reports as one line (the rest are bugs and keep their traceback)."""
    # hub/errors.py's errors are ValueError, OSError or (PublishError, WeightsError) RuntimeError subclasses.
    return (ValueError, OSError, FloatingPointError, PublishError, WeightsError)


def one_line(exc: BaseException, os_hint: str = "") -> str:
    """`exc` as one line. Our own errors say what to do already; a plain OSError (not one of ours) names
    its file and gets `os_hint`, or, for a full disk, a hint to free space."""
    if isinstance(exc, OSError) and type(exc).__module__ != "hub.errors":
        where = f"{exc.filename}: " if exc.filename else ""
        hint = os_hint or ("free space on that disk, then run the same command again" if exc.errno in DISK_FULL
                           else "")
        text = f"{where}{exc.strerror or exc}" + (f"; {hint}" if hint else "")
    else:
        text = str(exc) or type(exc).__name__
    return "; ".join(line.strip() for line in text.splitlines() if line.strip())


def run_command(command: Callable[[], int | None], os_hint: str = "",
                interrupted: str = "interrupted; nothing more was done") -> int:
    """Run `command` under the policy: its own exit code (None: 0), or FAILED / INTERRUPTED with one line."""
    try:
        return command() or 0
    except expected_errors() as exc:
        print(f"error: {one_line(exc, os_hint)}", file=sys.stderr)
        return FAILED
    except KeyboardInterrupt:
        print(f"\n{interrupted}", file=sys.stderr)
        return INTERRUPTED
