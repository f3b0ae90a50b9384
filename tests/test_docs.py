"""The README and docs/ point at things that exist.

For README.md and every docs/*.md: every relative link's target exists, and its `#anchor` names a heading of
the target page (GitHub's slug rule); every `python -m MODULE` in code names a module of the project whose file
exists; every `make TARGET` is a target of the Makefile. The README stays a front door (under 200 lines), every
docs page links back to it, and the README links every docs page. Failures name file:line.
"""
from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
README_MAX_LINES = 200
PROJECT = {"train", "hub", "space", "bench"}
# Modules of other projects that a page may run with `python -m`.
EXTERNAL = {"pip", "pytest", "venv", "ruff"}

FENCE = re.compile(r"^\s*(```|~~~)")
HEADING = re.compile(r"^ {0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
INLINE_CODE = re.compile(r"(`+)(.+?)\1", re.DOTALL)
PYTHON_M = re.compile(r"\b(?:python3?|torchrun\b[^\n`]*?)\s+-m\s+([A-Za-z_][\w.]*)")
MAKE = re.compile(r"(?:^|[\s;&|(])make\s+([A-Za-z_][\w-]*)")
SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")


def rel(path: Path, root: Path = ROOT) -> str:
    return path.relative_to(root).as_posix()


def split_code(text: str) -> tuple[list[tuple[int, str]], str]:
    """(fenced code lines as (line number, text), the page with fenced lines blanked: line numbers kept)."""
    code, prose, fence = [], [], None
    for number, line in enumerate(text.splitlines(), 1):
        m = FENCE.match(line)
        if fence is None and m:
            fence = m.group(1)
            prose.append("")
        elif fence is not None:
            if line.strip().startswith(fence):
                fence = None
            else:
                code.append((number, line))
            prose.append("")
        else:
            prose.append(line)
    return code, "\n".join(prose)


def line_of(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1


def inline_code(prose: str) -> list[tuple[int, str]]:
    """Inline code spans (which may wrap over lines) as (line number, content)."""
    return [(line_of(prose, m.start()), m.group(2)) for m in INLINE_CODE.finditer(prose)]


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: the rendered text, lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link shows its text
    text = re.sub(r"<[^>]+>", "", text).replace("`", "").replace("*", "")
    return re.sub(r"[^\w\- ]", "", text.strip().lower()).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """Every heading anchor of a page, with GitHub's -1, -2, ... suffixes for repeated headings."""
    _, prose = split_code(page.read_text(encoding="utf-8"))
    seen: dict[str, int] = {}
    found = set()
    for line in prose.splitlines():
        m = HEADING.match(line)
        if not m:
            continue
        base = slug(m.group(2))
        n = seen.get(base, 0)
        seen[base] = n + 1
        found.add(base if n == 0 else f"{base}-{n}")
    return found


def link_problems(page: Path, root: Path = ROOT) -> list[str]:
    text = page.read_text(encoding="utf-8")
    _, prose = split_code(text)
    without_code = INLINE_CODE.sub(lambda m: re.sub(r"[^\n]", " ", m.group(0)), prose)  # `[x](y)` is no link
    problems = []
    for m in LINK.finditer(without_code):
        target = m.group(1)
        where = f"{rel(page, root)}:{line_of(without_code, m.start())}"
        if SCHEME.match(target):
            continue  # https:, mailto: ...
        path_part, _, anchor = target.partition("#")
        dest = (page.parent / unquote(path_part)).resolve() if path_part else page
        if not dest.exists():
            problems.append(f"{where}: link to {target!r}: {path_part} does not exist")
        elif not dest.is_relative_to(root):
            problems.append(f"{where}: link to {target!r} leaves the repository")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            problems.append(f"{where}: link to {target!r}: {rel(dest, root)} has no heading with anchor #{anchor} "
                            f"(its anchors: {', '.join(sorted(anchors(dest)))})")
    return problems


def code_snippets(page: Path) -> list[tuple[int, str]]:
    code, prose = split_code(page.read_text(encoding="utf-8"))
    return code + inline_code(prose)


def module_problem(name: str) -> str | None:
    name = name.rstrip(".")
    top = name.split(".")[0]
    if top not in PROJECT:
        return None if top in EXTERNAL else f"{name} is not a module of this project ({', '.join(sorted(PROJECT))})"
    path = ROOT.joinpath(*name.split("."))
    if path.with_suffix(".py").is_file() or (path / "__main__.py").is_file():
        return None
    return f"neither {rel(path.with_suffix('.py'))} nor {rel(path / '__main__.py')} exists"


def make_targets() -> set[str]:
    text = (ROOT / "Makefile").read_text()
    return {t for line in text.splitlines() if (m := re.match(r"^([\w.-]+(?:\s+[\w.-]+)*)\s*:(?!=)", line))
            for t in m.group(1).split()}


@pytest.mark.parametrize("page", PAGES, ids=rel)
def test_links_exist(page):
    problems = link_problems(page)
    assert not problems, "broken links:\n" + "\n".join(problems)


@pytest.mark.parametrize("page", PAGES, ids=rel)
def test_python_m_commands_name_project_modules(page):
    problems = [f"{rel(page)}:{number}: python -m {name}: {problem}"
                for number, code in code_snippets(page) for name in PYTHON_M.findall(code)
                if (problem := module_problem(name))]
    assert not problems, "commands naming no module:\n" + "\n".join(problems)


@pytest.mark.parametrize("page", PAGES, ids=rel)
def test_make_commands_name_makefile_targets(page):
    targets = make_targets()
    problems = [f"{rel(page)}:{number}: make {name}: no such target in the Makefile ({', '.join(sorted(targets))})"
                for number, code in code_snippets(page) for name in MAKE.findall(code) if name not in targets]
    assert not problems, "\n".join(problems)


def test_readme_is_a_front_door():
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) < README_MAX_LINES, (
        f"README.md:{len(lines)}: {len(lines)} lines, the limit is under {README_MAX_LINES}: move evidence to docs/")


@pytest.mark.parametrize("page", PAGES[1:], ids=rel)
def test_docs_page_is_in_the_index_and_links_back(page):
    readme = ROOT / "README.md"
    _, prose = split_code(page.read_text(encoding="utf-8"))
    back = {(page.parent / m.group(1).partition("#")[0]).resolve() for m in LINK.finditer(prose)}
    assert readme in back, f"{rel(page)}:1: no link back to README.md"
    _, readme_prose = split_code(readme.read_text(encoding="utf-8"))
    listed = {(ROOT / m.group(1).partition("#")[0]).resolve() for m in LINK.finditer(readme_prose)}
    assert page in listed, f"README.md: no link to {rel(page)} (add it to the documentation index)"


def test_the_docs_exist():
    assert len(PAGES) > 1, "docs/ holds no page"


@pytest.mark.parametrize("heading, anchor", [
    ("Training: `python -m train`", "training-python--m-train"),
    ("Is the map right? Faithfulness, baselines, sanity check", "is-the-map-right-faithfulness-baselines-sanity-check"),
    ("Validation splits that follow patients: `--split random|ordered|group`",
     "validation-splits-that-follow-patients---split-randomorderedgroup"),
    ("bf16 vs fp32", "bf16-vs-fp32"),
    ("Does the model look at the lesion?", "does-the-model-look-at-the-lesion"),
    ("The [app](space/README.md) on **ZeroGPU**", "the-app-on-zerogpu"),
])
def test_slug_follows_github(heading, anchor):
    assert slug(heading) == anchor


def test_the_checks_find_what_they_look_for(tmp_path):
    """A broken link, a wrong anchor and a module that does not exist are reported with their line."""
    (tmp_path / "README.md").write_text("# Read me\n\n## Set-up: two commands\n")
    page = tmp_path / "docs" / "probe.md"
    page.parent.mkdir()
    page.write_text("# Probe\n\nSee [a](missing.md), [b](../README.md#no-such-heading), [c](#probe),\n"
                    "[d](../README.md#set-up-two-commands), `[e](not-a-link.md)`, [f](https://example.org/x.md).\n\n"
                    "```bash\npython -m bench.no_such_bench --help   # [g](in-code.md)\nmake no-such-target\n```\n"
                    "and `torchrun --nproc_per_node 2 -m train\n--data DIR`\n")
    links = link_problems(page, root=tmp_path)
    assert [p.split(": ")[0] for p in links] == ["docs/probe.md:3", "docs/probe.md:3"], links
    assert "missing.md does not exist" in links[0] and "#no-such-heading" in links[1]
    named = [(n, PYTHON_M.findall(c)) for n, c in code_snippets(page) if PYTHON_M.findall(c)]
    assert named == [(7, ["bench.no_such_bench"]), (10, ["train"])]
    assert module_problem("bench.no_such_bench") and module_problem("trian")
    assert module_problem("train") is None and module_problem("bench.leakage") is None
    assert module_problem("train.synthetic") is None and module_problem("pytest") is None
    assert [MAKE.findall(c) for _, c in code_snippets(page) if MAKE.findall(c)] == [["no-such-target"]]


def layer_chains(text: str) -> set[str]:
    """The `a → b | c → ...` chains of a page's code blocks: continuation lines (starting with →) joined, a leading
    container (`hub/explain/`) dropped."""
    code, _ = split_code(text)
    joined: list[str] = []
    for _, line in code:
        if line.lstrip().startswith("→") and joined:
            joined[-1] += " " + line.strip()
        else:
            joined.append(line)
    return {re.sub(r"^[\w/]+/ ", "", " ".join(line.split())) for line in joined if "→" in line}


def contract_chains(pyproject: str) -> dict[str, str]:
    """Each layers contract with a container in pyproject.toml's text, as a chain `a → b | c`."""
    import tomllib

    contracts = tomllib.loads(pyproject)["tool"]["importlinter"]["contracts"]
    return {c["containers"][0]: " → ".join(c["layers"]) for c in contracts if c["type"] == "layers" and
            c.get("containers")}


def layout_problems(layout: str, pyproject: str) -> list[str]:
    """The contracts whose layers the layout page does not draw exactly, in order."""
    contracts = contract_chains(pyproject)
    drawn = layer_chains(layout)
    return [f"{name}: {chain}" for name, chain in contracts.items() if chain not in drawn] if contracts else [
        "pyproject.toml holds no layers contract with a container"]


def test_layout_draws_the_import_contracts():
    """docs/layout.md's layer pictures are the contracts lint-imports enforces, in their order (they drifted once)."""
    problems = layout_problems((ROOT / "docs" / "layout.md").read_text(encoding="utf-8"),
                               (ROOT / "pyproject.toml").read_text())
    assert not problems, "docs/layout.md does not draw these layers of pyproject.toml (redraw them):\n" + "\n".join(
        problems)


def test_layout_check_finds_a_drifted_chain():
    pyproject = ('[[tool.importlinter.contracts]]\ntype = "layers"\ncontainers = ["train"]\n'
                 'layers = ["a", "b | c", "d"]\n')
    assert layout_problems("```\ntrain/  a → b | c\n          → d\n```\n", pyproject) == []
    for drifted in ("a → b → d", "a → b | c", "a → b | c → d → e", "x → a → b | c → d"):
        assert layout_problems(f"```\ntrain/  {drifted}\n```\n", pyproject) == ["train: a → b | c → d"], drifted
