"""Checks an experiment's config must pass before any job starts, beyond its schemas: every stage's
settings built (their cross-field rules), rules across steps, and inputs that must exist on disk.

Each check returns problems (lines naming the file, the key and the fix); llmrunner.config gathers
them all and raises once.
"""
from __future__ import annotations

import difflib
import glob
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from llmrunner.convert.settings import PLACEHOLDERS, ConvertSettings, command_problems
from llmrunner.errors import ConfigError, StageError
from llmrunner.eval.settings import EvalSettings
from llmrunner.eval.tasks import length_problems, lm_eval_task_problems
from llmrunner.evalsets import KIND_METRIC, set_file, unknown_set_problems
from llmrunner.jsonl import file_problem
from llmrunner.tokenize.settings import TokenizeCptSettings, TokenizeSftSettings
from llmrunner.train.settings import TrainSettings
from llmrunner.udatasets.hf_sources import open_source, parse_sources
from llmrunner.udatasets.settings import UdatasetsSettings

if TYPE_CHECKING:
    from llmrunner.config import Experiment

# Each step's settings class (udatasets: one per dataset, built with the dataset's keys).
STAGE_SETTINGS = {"tokenize_cpt": TokenizeCptSettings, "tokenize_sft": TokenizeSftSettings,
                  "train_cpt": TrainSettings, "train_sft": TrainSettings,
                  "hf2mg": ConvertSettings, "mg2hf": ConvertSettings, "eval": EvalSettings}
ENV_REFERENCE = "${env:"


def stage_settings_problems(exp: Experiment) -> list[str]:
    """Build every enabled step's settings as its job will, so their cross-field rules stop the run now."""
    problems = []
    for step, cls in STAGE_SETTINGS.items():
        if not exp.enabled(step):
            continue
        try:
            cls.from_dict(exp.steps[step])
        except ConfigError as err:
            problems.append(f"{exp.step_file(step)}: {err}")
            continue
        if step in PLACEHOLDERS and exp.steps[step]["command"] is not None:  # the step's own placeholders
            problems += [f"{exp.step_file(step)}: {p}" for p in command_problems(exp.steps[step]["command"],
                                                                                  PLACEHOLDERS[step])]
    if exp.enabled("udatasets"):
        try:  # the step's own keys first: a problem there is reported once, not once per dataset
            UdatasetsSettings.from_dict(exp.steps["udatasets"])
        except ConfigError as err:
            return problems + [f"{exp.step_file('udatasets')}: {err}"]
        for kind in ("cpt", "sft"):
            for name, spec in exp.datasets(kind).items():
                values = {**exp.steps["udatasets"], **{k: v for k, v in spec.items() if k != "sources"}}
                try:
                    UdatasetsSettings.from_dict(values).adapter_for(kind)
                except ConfigError as err:
                    problems.append(f"{exp.step_file('udatasets')} with data.{kind}.{name}: {err}")
    return problems


def cross_step_problems(exp: Experiment, context_length: int | None) -> list[str]:
    """Rules between steps: SFT sequences within tokenize_sft's cap, lengths within the model's context."""
    problems = []
    if exp.enabled("train_sft") and exp.enabled("tokenize_sft"):
        seq_length, cap = exp.steps["train_sft"]["seq_length"], exp.steps["tokenize_sft"]["max_tokens"]
        if seq_length > cap:
            problems.append(f"{exp.step_file('train_sft')}: seq_length {seq_length} is above tokenize_sft's "
                            f"max_tokens {cap} ({exp.step_file('tokenize_sft')}), which already cut every "
                            f"conversation to {cap} tokens: raise max_tokens to at least {seq_length}, or lower "
                            "seq_length")
    if context_length is None:
        return problems
    for step in ("train_cpt", "train_sft"):
        seq_length = exp.steps[step]["seq_length"]
        if exp.enabled(step) and seq_length > context_length:
            problems.append(f"{exp.step_file(step)}: seq_length {seq_length} is above the base model's "
                            f"max_position_embeddings {context_length}: lower it to {context_length} or less")
    max_length = exp.steps["eval"]["max_length"]
    if exp.enabled("eval") and max_length > context_length:
        problems.append(f"{exp.step_file('eval')}: max_length {max_length} is above the base model's "
                        f"max_position_embeddings {context_length}: lower it to {context_length} or less")
    return problems


def hf_context_length(model_dir: str) -> int | None:
    """max_position_embeddings from an HF model folder's config.json (None when it does not say)."""
    try:
        value = json.loads((Path(model_dir) / "config.json").read_text()).get("max_position_embeddings")
    except (OSError, ValueError):
        return None
    return value if isinstance(value, int) else None


def base_model_problems(exp: Experiment, pipeline_file: Path) -> list[str]:
    """A base model folder whose config.json the built-in converter cannot map (a mixture-of-experts model,
    another RoPE scaling, biases it does not have, ...), while hf2mg or mg2hf use it: one problem naming the
    keys, with the external converter (`command`) as the way out. Checked only then: torch is imported for it."""
    builtin = [step for step in ("hf2mg", "mg2hf") if exp.enabled(step) and exp.steps[step]["command"] is None]
    config_path = Path(exp.pipeline["base_model"]["src"]) / "config.json"
    if not builtin or not config_path.is_file():  # builtin:<name>, or no folder: named by the other checks
        return []
    from llmrunner.megatron.hf_mapping import shape_from_hf_config

    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except ValueError as err:
        return [f"{pipeline_file}: base_model.src: {config_path} is not valid JSON ({err}); fix or re-download it"]
    if not isinstance(config, dict):
        return [f"{pipeline_file}: base_model.src: {config_path} holds no JSON object; fix or re-download it"]
    try:
        shape_from_hf_config(config, source=str(config_path))
    except StageError as err:
        files = " and ".join(str(exp.step_file(step)) for step in ("hf2mg", "mg2hf"))
        return [f"{pipeline_file}: base_model.src: {err}. The built-in converter ({', '.join(builtin)} on, "
                f"`command` null) cannot convert this model: set `command:` in {files} to a converter that can "
                "(the external converter, docs/stages.md)"]
    return []


def unknown_step_files(steps_dir: Path, step_files: dict[str, str]) -> list[str]:
    """Files in steps/ that are not step files: a misspelt name would otherwise run the defaults silently."""
    if not steps_dir.is_dir():
        return []
    known = set(step_files.values())
    problems = []
    for path in sorted(steps_dir.iterdir()):
        if path.name in known or path.name.startswith("."):  # hidden files (.gitkeep, editor swap files)
            continue
        expected = _closest_step_file(path.name, step_files)
        if expected and not (steps_dir / expected).exists():
            fix = f"rename it to {expected}"
        elif expected:
            fix = f"it looks like {expected}, which exists: move what it holds there and remove it"
        else:
            fix = f"step files are {', '.join(step_files.values())}; rename or remove it"
        problems.append(f"{path}: not a step file, so it would be ignored; {fix}")
    return problems


def _closest_step_file(name: str, step_files: dict[str, str]) -> str | None:
    """The step file `name` was meant to be: same label number, or a close spelling of the step."""
    by_number = [f for f in step_files.values() if f.split(".", 1)[0] == name.split(".", 1)[0]]
    if by_number:
        return by_number[0]
    close = difflib.get_close_matches(name, list(step_files.values()), n=1, cutoff=0.6)
    return close[0] if close else None


def source_problems(exp: Experiment, pipeline_file: Path) -> list[str]:
    """Every dataset's sources exist: each file, or glob of files, a regular file this user can read; each `hf:`
    source's split, in its save_to_disk folder or the datasets cache. A custom adapter's file exists."""
    problems = []
    for kind in ("cpt", "sft"):
        for name, spec in exp.datasets(kind).items():
            key = f"{pipeline_file}: data.{kind}.{name}"
            if spec["adapter"] == "custom":
                adapter_file = spec["adapter_function"].rpartition(":")[0]
                if not os.path.isfile(adapter_file):
                    problems.append(f"{key}.adapter_function: the file '{adapter_file}' does not exist (paths are "
                                    f"relative to {os.getcwd()}); set it to 'path/to/file.py:function'")
            patterns, hf_sources = parse_sources(spec["sources"])
            for source in hf_sources:
                try:
                    open_source(source)
                except ConfigError as err:
                    problems.append(f"{key}.sources: {err}")
            if hf_sources and not exp.enabled("udatasets"):
                problems.append(f"{key}.sources: an hf: source becomes an Arrow file, which only udatasets reads "
                                "(tokenize reads JSON Lines); set steps.udatasets: true")
            for pattern in patterns:
                if glob.has_magic(pattern):
                    matches = glob.glob(pattern)
                    if not matches:
                        problems.append(f"{key}.sources: '{pattern}' matches no file")
                    problems += [f"{key}.sources: {p}" for m in sorted(matches) if (p := _file_problem(m))]
                elif problem := _file_problem(pattern):
                    problems.append(f"{key}.sources: {problem}")
    return problems


def _file_problem(path: str) -> str | None:
    """Why `path` cannot be a source (in the words prepare and udatasets use), or None."""
    if not os.path.lexists(path):
        return f"{path} does not exist (paths are relative to {os.getcwd()})"
    return file_problem(path)


def command_files_problems(exp: Experiment) -> list[str]:
    """An external converter's command_files must exist: they become the job's inputs."""
    return [f"{exp.step_file(step)}: command_files: '{path}' is not a file (paths are relative to {os.getcwd()}); "
            "list the files the command reads, e.g. its script"
            for step in ("hf2mg", "mg2hf") if exp.enabled(step)
            for path in exp.steps[step]["command_files"] if not os.path.isfile(path)]


def env_in_command_warnings(raw_steps: dict[str, tuple[Path, dict]], enabled: dict[str, bool]) -> list[str]:
    """`${env:VAR}` in a converter's `command` puts the variable's value into the job's params: the shell
    command Snakemake prints, .snakemake/metadata and convert_command.json (and a changed value reruns the
    step). Say so; the shell's own `$VAR` in the command keeps it out."""
    warnings = []
    for step in ("hf2mg", "mg2hf"):
        path, data = raw_steps[step]
        command = data.get("command")
        if enabled.get(step, True) and isinstance(command, str) and ENV_REFERENCE in command:
            warnings.append(f"{path}: `command` uses ${{env:...}}: its value becomes part of the job's params (printed "
                            "with the shell command, stored in .snakemake/metadata and convert_command.json, and a "
                            "changed value reruns the step). For a secret write the shell's $VAR instead, e.g. "
                            "`--token \"$HF_TOKEN\"`.")
    return warnings


def eval_set_problems(exp: Experiment) -> list[str]:
    """The sets the eval step scores, against it: generation within max_length, lm_eval tasks that lm-eval
    knows (with close names). lm-eval is imported, and its task index built (seconds), only when an lm_eval
    set is used."""
    used = [exp.evalsets[n] for n in exp.eval_sets() if n in exp.evalsets]
    problems = length_problems(used, exp.steps["eval"]["max_length"], str(exp.step_file("eval")))
    if any(s.kind == "lm_eval" for s in used):
        problems += [p for s in used if s.kind == "lm_eval" for p in lm_eval_task_problems(s, str(set_file(s.name)))]
    return problems


def baseline_problems(exp: Experiment, pipeline_file: Path, experiments_dir: Path) -> list[str]:
    """`baseline` names another experiment of config/experiments/ (close names suggested), not itself, and
    following baselines from it never comes back to this one (the others' pipeline.yaml are read just for
    `baseline`, so a baseline with config problems of its own is still named here)."""
    baseline = exp.pipeline["baseline"]
    if baseline is None:
        return []
    key = f"{pipeline_file}: baseline '{baseline}'"
    if baseline == exp.name:
        return [f"{key} names this experiment itself; set it to another experiment, or to null"]
    known = sorted(p.name for p in experiments_dir.iterdir() if (p / "pipeline.yaml").is_file())
    if baseline not in known:
        close = difflib.get_close_matches(baseline, known, n=3, cutoff=0.6)
        hint = f"did you mean {', '.join(close)}? " if close else ""
        return [f"{key}: no experiment {experiments_dir / baseline / 'pipeline.yaml'}; {hint}"
                f"experiments: {', '.join(known)}"]
    chain = [exp.name, baseline]
    while (following := _baseline_of(experiments_dir / chain[-1] / "pipeline.yaml")) is not None:
        if following == exp.name:
            cycle = " → ".join((*chain, following))
            return [f"{key}: baselines form a cycle ({cycle}); an experiment cannot be compared against one that "
                    f"is compared against it: set one of them to another experiment, or to null"]
        if following in chain or not (experiments_dir / following / "pipeline.yaml").is_file():
            break  # a cycle among the others, or a missing one: their own config load names it
        chain.append(following)
    return []


def _baseline_of(pipeline_file: Path) -> str | None:
    """The `baseline` of another experiment's pipeline.yaml, or None (not set, or the file not readable:
    that experiment's own config load says why)."""
    try:
        data = yaml.safe_load(pipeline_file.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return None
    baseline = data.get("baseline") if isinstance(data, dict) else None
    return baseline if isinstance(baseline, str) else None


def primary_problems(exp: Experiment, pipeline_file: Path) -> list[str]:
    """Each `primary` entry '<set>:<metric>' names a registered set that the eval step scores and a metric that
    set's kind has (lm_eval: any; lm-eval knows its tasks' metrics)."""
    entries = [entry.partition(":") for entry in exp.pipeline["primary"]]
    source = f"{pipeline_file}"
    problems = unknown_set_problems([name for name, _, _ in entries], exp.evalsets, source, "primary")
    scored = exp.eval_sets() if exp.enabled("eval") else []
    for name, _, metric in entries:
        if name not in exp.evalsets:
            continue
        evalset = exp.evalsets[name]
        own = KIND_METRIC[evalset.kind][0] if evalset.kind in KIND_METRIC else evalset.metric
        if evalset.kind != "lm_eval" and metric != own:
            problems.append(f"{source}: primary lists '{name}:{metric}', but {name} is a {evalset.kind} set, "
                            f"whose metric is {own}: write '{name}:{own}'")
        if name not in scored:
            where = ("the eval step is off (steps.eval)" if not exp.enabled("eval") else
                     f"{exp.step_file('eval')} `sets` does not list it")
            problems.append(f"{source}: primary lists '{name}:{metric}', but {where}: score the set, or remove it "
                            "from primary")
    return problems
