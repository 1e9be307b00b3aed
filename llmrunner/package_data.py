"""Where the files the `llmrunner` command needs beside the code are: the workflow (Snakefile, rules, profiles),
the config schemas, and the demo project that `llmrunner init` copies. They ship as package data, so the command
works from an installed wheel.

In a checkout, llmrunner/workflow/ and llmrunner/demo/ hold symlinks to the paths users know (Snakefile, rules/,
profiles/, config/schemas/, config/, resources/): one copy of each file. setuptools copies the files the links
point to into the sdist and the wheel (tests/test_package.py installs the wheel and runs the command)."""
from __future__ import annotations

from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
WORKFLOW_DIR = PACKAGE_DIR / "workflow"
# resolved: in a checkout the Snakefile at the repository root, so that Snakemake finds rules/, envs/ and
# profiles/default (the workflow profile) beside it, as when it runs without the command
SNAKEFILE = (WORKFLOW_DIR / "Snakefile").resolve()
PROFILES_DIR = SNAKEFILE.parent / "profiles"
SCHEMA_DIR = WORKFLOW_DIR / "schemas"
DEMO_DIR = PACKAGE_DIR / "demo"
"""The demo project, laid out as a working folder: config/ (config.yaml, evalsets/, the demo study's experiments)
and resources/demo/ (its data, and the text builtin:tiny-qwen3 trains its tokenizer on)."""
