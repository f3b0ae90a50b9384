"""README.md front-matter validation, as POST /api/validate-yaml reports it before every commit with a README.

Stdlib only, so this is a structural check of the subset model cards use (a top-level mapping of `key: value` /
`key:` + indented lists or mappings), not a full YAML parser: enough for the client's two behaviours, an aborted
commit on errors and a warning on missing metadata.
"""

from __future__ import annotations

import re


def check_front_matter(content: str) -> tuple[list[dict], list[dict]]:
    """(errors, warnings) for a README's content, each a list of {"message": ...}."""
    lines = content.splitlines()
    if not lines or lines[0].strip() != "---":
        return [], [{"message": "Empty or missing yaml metadata in repo card"}]
    try:
        end = next(i for i, line in enumerate(lines[1:], start=1) if line.strip() == "---")
    except StopIteration:
        return [{"message": "YAML metadata is not closed by a '---' line"}], []
    errors, keys, in_block = [], set(), False  # in_block: the last key had no inline value ("tags:")
    for number, line in enumerate(lines[1:end], start=2):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        indent = line[: len(line) - len(line.lstrip())]
        if "\t" in indent:
            errors.append({"message": f"line {number}: tabs are not allowed for indentation"})
        elif indent:
            continue  # nested content of the previous key (list items, mappings, block scalars)
        elif stripped.startswith("- "):
            if not in_block:  # "tags:\n- a" is a list under a key; a list on its own is not a mapping
                errors.append({"message": f"line {number}: metadata must be a mapping, not a list"})
        elif not (match := re.match(r"^([^\s:#\-][^:]*):(?:\s+(.*))?$", line)):
            errors.append({"message": f"line {number}: expected 'key: value' (metadata must be a mapping)"})
        elif match.group(1) in keys:
            errors.append({"message": f"line {number}: duplicated key '{match.group(1)}'"})
        else:
            keys.add(match.group(1))
            value = (match.group(2) or "").strip()
            in_block = not value
            if (value[:1] == "[" and not value.endswith("]")) or (value[:1] == "{" and not value.endswith("}")):
                errors.append({"message": f"line {number}: unclosed flow collection"})
    return errors, []
