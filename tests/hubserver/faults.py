"""Fault injection: answer an error to, or die on, chosen requests, so tests can check what the client and the
product code do when the Hub fails halfway (a 500 on the commit, a crash mid-upload...).

Rules match the method and `re.search` the raw path (no query string); each rule is consumed by the requests it
hits. Killing is left to the server (`HubServer._die`): this class only decides which request it is.
"""

from __future__ import annotations

import re
import threading


class FaultInjector:
    """Pending `fail_next` / `kill_on` rules, safe to add from the test thread while requests are served."""

    def __init__(self) -> None:
        self._faults_lock = threading.Lock()
        self._fail_rules: list[list] = []  # [method, regex, status, remaining]
        self._kill_rules: list[tuple[str, re.Pattern, threading.Event]] = []

    def fail_next(self, method: str, path_regex: str, status: int = 500, count: int = 1) -> None:
        """Answer `status` to the next `count` requests whose method matches and raw path (no query) `re.search`es."""
        with self._faults_lock:
            self._fail_rules.append([method.upper(), re.compile(path_regex), status, count])

    def kill_on(self, method: str, path_regex: str) -> threading.Event:
        """When a matching request arrives, stop the server without answering it. The Event is set once stopped."""
        stopped = threading.Event()
        with self._faults_lock:
            self._kill_rules.append((method.upper(), re.compile(path_regex), stopped))
        return stopped

    def clear_faults(self) -> None:
        """Drop pending fail_next / kill_on rules (test cleanup)."""
        with self._faults_lock:
            self._fail_rules.clear()
            self._kill_rules.clear()

    def take_kill(self, method: str, path: str) -> threading.Event | None:
        """The Event of the first kill rule matching this request, consuming the rule."""
        with self._faults_lock:
            for i, (rule_method, regex, stopped) in enumerate(self._kill_rules):
                if rule_method == method and regex.search(path):
                    del self._kill_rules[i]
                    return stopped
        return None

    def take_failure(self, method: str, path: str) -> int | None:
        """The status of the first fail rule matching this request, counting it down."""
        with self._faults_lock:
            for rule in self._fail_rules:
                if rule[0] == method and rule[1].search(path):
                    rule[3] -= 1
                    if rule[3] <= 0:
                        self._fail_rules.remove(rule)
                    return rule[2]
        return None
