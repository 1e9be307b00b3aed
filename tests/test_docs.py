"""The repository's docs and comments point only to files the repository holds."""
from __future__ import annotations

import posixpath
import re
import subprocess
from functools import cache
from pathlib import PurePosixPath

from tests.paths import REPO

# What is read: the docs, and the config, workflow and package files whole (their comments and docstrings point
# to files; so may their code). Not tests/, whose fixtures name the files they are about to write.
DOCS = ("README.md", "docs/**/*.md", "bench/README.md", "config/README.md", "datapool/README.md")
SOURCES = ("config/**/*.yaml", "profiles/**/*.yaml", "llmrunner/**/*.py", "scripts/*.py", "bench/*.py",
           "bench/*.sh", "rules/*.smk", "Snakefile", "Makefile")
# Folders a run or a benchmark writes into (ignored by git): a path there is an output, not a repo file.
OUTPUT_FOLDERS = ("datapool/", "bench/results/")
# Names the docs give the reader's own experiments, eval sets and data in examples.
EXAMPLE_NAMES = re.compile(r"(^|/)(my_[\w-]*|forum)([/.]|$)")
# After one of these a path goes on as a pattern (`<exp>`, `{a,b}`, `*.jsonl`, `${VAR}`).
PATTERN_CHARS = "<{*$["
MARKDOWN_LINK = re.compile(r"\]\(([^)\s#]+)(?:#[^)]*)?\)")


@cache
def repo_files() -> frozenset[str]:
    """Tracked files, files not yet added (not ignored), and every folder above them."""
    listing = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                             capture_output=True, text=True, check=True).stdout.splitlines()
    folders = {f"{parent}/" for name in listing for parent in PurePosixPath(name).parents if str(parent) != "."}
    return frozenset(listing) | folders


@cache
def repo_path_pattern() -> re.Pattern[str]:
    """A path starting at one of the repository's top-level folders: `docs/x.md`, `rules/`, `llmrunner/train/`."""
    tops = sorted({name.split("/")[0] for name in repo_files() if "/" in name})
    return re.compile(r"(?<![\w./<>{}$~-])((?:%s)/[\w./-]*)" % "|".join(map(re.escape, tops)))


def files_to_read(patterns: tuple[str, ...]) -> list[str]:
    """The repository's files matching the glob patterns (not those reached through a link)."""
    return sorted({str(p.relative_to(REPO)) for pattern in patterns for p in REPO.glob(pattern)} & repo_files())


def named_path(match: re.Match[str], text: str) -> str | None:
    """The repo path a match names (a folder ends in `/`), or None when it is no claim about a repo file: a word
    such as `docs/s`, an output folder's path, an example's."""
    path = match.group(1).rstrip(".")
    if match.end() < len(text) and text[match.end()] in PATTERN_CHARS:
        path = path[:path.rfind("/") + 1]  # `bench/bench_<stage>.py`: the folder it is in
    elif not (path.endswith("/") or re.search(r"\.\w+$", path)):
        return None
    if (path.startswith(OUTPUT_FOLDERS) and path != "datapool/README.md") or EXAMPLE_NAMES.search(path):
        return None
    return path


def named_paths(name: str, text: str) -> set[str]:
    """The repo paths the file `name` with this text names; in Markdown also its links, from the file's folder."""
    found = {named_path(m, text) for m in repo_path_pattern().finditer(text)} - {None}
    if name.endswith(".md"):
        folder = PurePosixPath(name).parent
        found |= {posixpath.normpath(folder / target) + ("/" if target.endswith("/") else "")
                  for target in MARKDOWN_LINK.findall(text) if "://" not in target and ":" not in target}
    return found


def missing_paths(name: str) -> list[str]:
    """`file: path` for each path the file names that the repository lacks."""
    found = named_paths(name, (REPO / name).read_text(encoding="utf-8"))
    return [f"{name}: {path}" for path in sorted(found) if path not in repo_files()]


def test_docs_name_only_files_the_repository_holds():
    docs = files_to_read(DOCS)
    assert {"README.md", "docs/architecture.md", "docs/megatron-on-cpu.md", "datapool/README.md"} <= set(docs)
    missing = [line for name in docs for line in missing_paths(name)]
    assert not missing, "paths named in the docs that the repository lacks:\n" + "\n".join(missing)


def test_sources_name_only_files_the_repository_holds():
    sources = files_to_read(SOURCES)
    assert "llmrunner/layout.py" in sources and "rules/train.smk" in sources
    missing = [line for name in sources for line in missing_paths(name)]
    assert not missing, "paths named in comments and docstrings that the repository lacks:\n" + "\n".join(missing)


def test_no_reference_to_notes_outside_the_repository():
    outside = re.compile(r"DESIGN\.md|STYLE\.md|\.\./shared|shared notes")
    hits = [f"{name}: {m.group(0)}" for name in files_to_read(DOCS + SOURCES)
            for m in outside.finditer((REPO / name).read_text(encoding="utf-8"))]
    assert not hits, "references to notes the repository does not carry:\n" + "\n".join(hits)


def test_the_checker_finds_a_missing_file_and_passes_outputs_and_examples():
    text = ("see docs/gone.md, `llmrunner/layout.py`, rules/, <DATAPOOL_ROOT>/reports/report.md, "
            "datapool/reports/compare.md, config/experiments/my_exp/pipeline.yaml, 1,160 docs/s, "
            "bench/results/train_<date>.json, llmrunner/<stage>/core.py, [a](stages.md#eval), "
            "[b](../datapool/README.md), [c](nowhere.md), [d](#slurm), [e](https://example.org/x.md)")
    named = named_paths("docs/x.md", text)
    assert named == {"docs/gone.md", "llmrunner/layout.py", "rules/", "llmrunner/", "docs/stages.md",
                     "datapool/README.md", "docs/nowhere.md"}
    assert {p for p in named if p not in repo_files()} == {"docs/gone.md", "docs/nowhere.md"}
