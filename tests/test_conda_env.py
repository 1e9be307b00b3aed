"""envs/llmrunner.yaml, the environment every rule names for `snakemake --sdm conda`: its pip list installs the
project from the workflow's folder at the versions CI tests, and what the rules run imports nothing else."""
from __future__ import annotations

import ast
import importlib.metadata
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.paths import REPO

ENV_FILE = REPO / "envs/llmrunner.yaml"
OPTIONAL = ("ImportError", "ModuleNotFoundError")


def pip_list() -> list[str]:
    (pip,) = [d["pip"] for d in yaml.safe_load(ENV_FILE.read_text())["dependencies"] if isinstance(d, dict)]
    return pip


def rule_modules() -> set[str]:
    """The modules the rules run (`python -m <module>` in rules/*.smk)."""
    commands = "".join(f.read_text() for f in (REPO / "rules").glob("*.smk"))
    return set(re.findall(r"python -m (llmrunner[\w.]*)", commands))


def source(module: str) -> Path | None:
    """The file of one of llmrunner's modules (a package: its __init__.py); None for a name that is no module."""
    path = REPO.joinpath(*module.split("."))
    if path.is_dir():
        return path / "__init__.py"
    return path.with_suffix(".py") if path.with_suffix(".py").is_file() else None


def catches_import_error(handler: ast.ExceptHandler) -> bool:
    return handler.type is not None and any(name in ast.unparse(handler.type) for name in OPTIONAL)


def imports(path: Path, module: str) -> list[tuple[str, bool]]:
    """(imported module, optional) for each import in `path`, the source of `module`; optional: inside a try that
    catches ImportError. `from llmrunner.x import y` names llmrunner.x.y too (y may be a module)."""
    tree = ast.parse(path.read_text(), str(path))
    tries = [t for t in ast.walk(tree) if isinstance(t, ast.Try) and any(map(catches_import_error, t.handlers))]
    optional = {id(node) for t in tries for stmt in t.body for node in ast.walk(stmt)}
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, id(node) in optional) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the package, one level up per dot after the first
                base = ".".join(package[:len(package) - node.level + 1] + [base]).rstrip(".")
            found.append((base, id(node) in optional))
            if base.startswith("llmrunner"):
                found += [(f"{base}.{alias.name}", id(node) in optional) for alias in node.names]
    return found


def third_party_imports() -> dict[str, str]:
    """Top-level name of each required third-party import of the rules' modules -> an llmrunner module that
    imports it, following llmrunner's own imports (packages' __init__ included)."""
    todo = [f"{m}.__main__" if (REPO.joinpath(*m.split(".")) / "__main__.py").is_file() else m for m in rule_modules()]
    seen, third_party = set(), {}
    while todo:
        module = todo.pop()
        path = source(module)
        if module in seen or path is None:  # None: `from llmrunner.x import name` names no module
            continue
        seen.add(module)
        todo += [".".join(module.split(".")[:i]) for i in range(1, module.count(".") + 1)]
        for name, optional in imports(path, module):
            top = name.split(".")[0]
            if top == "llmrunner":
                todo.append(name)
            elif not optional and top not in sys.stdlib_module_names and top != "__future__":
                third_party.setdefault(top, module)
    return third_party


def provided_distributions() -> set[str]:
    """What `pip install <the workflow folder>` installs: pyproject.toml's dependencies and theirs (with the
    extras asked for), as this environment's metadata says."""
    requires = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    todo, provided = [Requirement(r) for r in requires], set()
    done = set()
    while todo:
        req = todo.pop()
        key = (canonicalize_name(req.name), frozenset(req.extras))
        if key in done:
            continue
        done.add(key)
        provided.add(key[0])
        for line in importlib.metadata.requires(req.name) or []:
            sub = Requirement(line)
            if sub.marker is None or any(sub.marker.evaluate({"extra": e}) for e in ("", *req.extras)):
                todo.append(sub)
    return provided


def test_env_installs_the_project_from_the_workflow_folder_at_the_tested_versions(tmp_path):
    # as conda does: the pip list as a requirements file beside a copy of the env file (Snakemake keeps its copy in
    # .snakemake/conda/), LLMRUNNER_WORKFLOW set by the rules to the workflow's folder
    lines = pip_list()
    assert "-c ${LLMRUNNER_WORKFLOW}/constraints.txt" in lines  # the pins CI installs, not the ranges
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("".join(line + "\n" for line in lines))
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--no-index", "--no-build-isolation",
                           "-r", str(requirements)], cwd=tmp_path, capture_output=True, text=True,
                          env={**os.environ, "LLMRUNNER_WORKFLOW": str(REPO)})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    # everything else is already here at the constrained version: the environment CI tests
    (installs,) = re.findall(r"^Would install (.*)$", proc.stdout, re.M)
    assert [name.rpartition("-")[0] for name in installs.split()] == ["llmrunner"], proc.stdout[-3000:]


def test_every_module_a_rule_runs_imports_only_what_its_env_provides():
    modules = rule_modules()
    assert {"llmrunner.prepare", "llmrunner.train", "llmrunner.report"} <= modules
    names = importlib.metadata.packages_distributions()
    provided = provided_distributions()
    missing = {top: (module, names.get(top)) for top, module in third_party_imports().items()
               if not {canonicalize_name(d) for d in names.get(top, [])} & provided}
    assert not missing, (f"imported by the rules' modules but not installed by {ENV_FILE.name} (pyproject.toml's "
                         f"dependencies): {missing}")
