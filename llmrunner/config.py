"""Load, validate and resolve the run config and every experiment's config.

Flow: YAML → defaults filled from the JSON schema → `${NAME}`
substitution → schema validation (unknown keys, types) → cross-step checks. Every problem is
collected and raised once as a ConfigError naming the file, the key path and the fix.

The .smk files import only this module: `load_run_config()` gives a `RunConfig` whose methods
answer the path and param questions the rules ask.
"""
from __future__ import annotations

import glob
import json
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from llmrunner import config_checks, evalsets
from llmrunner.errors import ConfigError
from llmrunner.evalsets import EvalSet
from llmrunner.layout import ExperimentLayout, tokenize_outputs
from llmrunner.prepare import tiny_model
from llmrunner.schemas import fill_defaults, load_schema, schema_problems
from llmrunner.udatasets.hf_sources import HfSource, open_source, parse_sources

EXPERIMENTS_DIR = Path("config") / "experiments"

# The seed's numbering is kept as a label; execution order is the DAG's.
STEP_FILES = {
    "udatasets": "1.udatasets.yaml",
    "tokenize_cpt": "2.tokenize_cpt.yaml",
    "tokenize_sft": "3.tokenize_sft.yaml",
    "train_cpt": "4.train_cpt.yaml",
    "mg2hf": "5.mg2hf.yaml",
    "hf2mg": "6.hf2mg.yaml",
    "train_sft": "7.train_sft.yaml",
    "eval": "8.eval.yaml",
}
STEPS = tuple(STEP_FILES)
# Steps that share one schema (config/schemas/<name>.schema.json); the others use their own name.
STEP_SCHEMAS = {"train_cpt": "train", "train_sft": "train", "hf2mg": "convert", "mg2hf": "convert"}
KINDS = ("cpt", "sft")
EVAL_STAGES = ("base", "cpt", "sft")
# Keys kept out of a job's params: `threads` changes speed, not output (it becomes the rule's
# threads); eval `stages` chooses which jobs exist, not what one job writes; convert `command_files`
# become the job's inputs (an edited file, or a changed list, reruns it as an input change); train `slurm` is
# the job's SLURM request (its resources).
NOT_PARAMS = ("threads", "stages", "command_files", "slurm")
# udatasets keys that only its gather job uses (de-dup and augmentation): a change reruns no map job.
UDATASETS_GATHER_ONLY = ("dedup", "near_threshold", "augment")
# Built-in base models: the module that builds each (its corpus, relative to the working directory, is the
# rule's input, so a change rebuilds it; its MODEL_SHAPE gives the context length checked at load).
BUILTIN_MODELS = {"builtin:tiny-qwen3": tiny_model}
EXPERIMENT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_REF = re.compile(r"\$\{([^}]+)\}")


# ---------------------------------------------------------------- YAML + schema
def load_yaml(path: Path) -> dict:
    """Read one YAML mapping; a syntax error names the file and line."""
    if not path.is_file():
        raise ConfigError(f"{path}: file not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}:{where} is not valid YAML ({getattr(err, 'problem', err)}). "
                          "Fix the syntax there.") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of keys to values, got {type(data).__name__}")
    return data


# ---------------------------------------------------------------- ${NAME} substitution
def _lookup(name: str, namespace: dict, source: str) -> Any:
    if name.startswith("env:"):
        var = name[4:]
        if var not in os.environ:
            raise ConfigError(f"{source}: ${{{name}}} refers to environment variable {var}, which is not set")
        return os.environ[var]
    node: Any = namespace
    for part in name.split("."):
        if not isinstance(node, dict) or part not in node:
            known = ", ".join(sorted(k for k in namespace if not k.startswith("_")))
            raise ConfigError(f"{source}: ${{{name}}} is not defined (names you can use: {known}, "
                              "dotted paths into them, env:VAR)")
        node = node[part]
    return node


def substitute(tree: Any, namespace: dict, source: str, _stack: tuple[str, ...] = ()) -> Any:
    """Resolve `${NAME}` in every string of `tree`. A string that is only a reference keeps the
    referenced value's type; references inside referenced values resolve too (cycles are errors)."""
    if isinstance(tree, dict):
        return {k: substitute(v, namespace, source, _stack) for k, v in tree.items()}
    if isinstance(tree, list):
        return [substitute(v, namespace, source, _stack) for v in tree]
    if not isinstance(tree, str) or "${" not in tree:
        return tree

    def resolve(name: str) -> Any:
        if name in _stack:
            cycle = " → ".join((*_stack[_stack.index(name):], name))
            raise ConfigError(f"{source}: ${{...}} references form a cycle: {cycle}")
        return substitute(_lookup(name, namespace, source), namespace, source, (*_stack, name))

    whole = _REF.fullmatch(tree)
    if whole:
        return resolve(whole.group(1).strip())
    return _REF.sub(lambda m: str(resolve(m.group(1).strip())), tree)


# ---------------------------------------------------------------- experiments
@dataclass
class Experiment(ExperimentLayout):
    """One experiment's resolved config: pipeline.yaml plus a settings dict per step."""

    name: str
    config_dir: Path
    root: str  # DATAPOOL_ROOT, relative to the workflow's working directory
    pipeline: dict
    steps: dict[str, dict] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)  # printed when the config loads; never stop a run
    evalsets: dict[str, EvalSet] = field(default_factory=dict)  # every registered eval set (config/evalsets/)

    def step_file(self, step: str) -> Path:
        return self.config_dir / "steps" / STEP_FILES[step]

    def enabled(self, step: str) -> bool:
        return bool(self.pipeline["steps"][step])

    def datasets(self, kind: str) -> dict[str, dict]:
        return self.pipeline["data"].get(kind, {})

    def sources(self, kind: str, dataset: str) -> list[str]:
        """The dataset's raw files, globs expanded (sorted), relative to the working directory, then the files of
        its `hf:` folder sources: what prepare reads, so that a changed file or re-saved folder reruns it."""
        files, hf = self._sources(kind, dataset)
        return files + [f for source in hf for f in open_source(source).files]

    def prepare_source_args(self, kind: str, dataset: str) -> list[str]:
        """prepare's `--sources FILE...` and `--hf JSON...` (each `hf:` source resolved: its split, and for a Hub
        name the config and cache revision, so that a newer cached revision reruns prepare)."""
        files, hf = self._sources(kind, dataset)
        resolved = [open_source(source).source.to_json() for source in hf]
        return (["--sources", *files] if files else []) + (["--hf", *resolved] if resolved else [])

    def _sources(self, kind: str, dataset: str) -> tuple[list[str], list[HfSource]]:
        """(the raw files, globs expanded, `hf:` sources)."""
        patterns, hf = parse_sources(self.datasets(kind)[dataset]["sources"])
        files: list[str] = []
        for pattern in patterns:
            files.extend(sorted(glob.glob(pattern)) if glob.has_magic(pattern) else [pattern])
        return files, hf

    def settings(self, step: str) -> dict:
        """The step's settings that change its output (what the rule passes as a param)."""
        return {k: v for k, v in self.steps[step].items() if k not in NOT_PARAMS}

    def eval_sets(self) -> list[str]:
        """The sets the eval step scores: its `sets`, or every registered set."""
        wanted = self.steps["eval"]["sets"]
        return list(wanted) if wanted is not None else sorted(self.evalsets)

    def contamination_sets(self) -> list[str]:
        """The registered sets the contamination report checks the training data against (lm-eval's own
        tasks are read by lm-eval only)."""
        return sorted(name for name, s in self.evalsets.items() if s.kind != "lm_eval")

    def contamination_datasets(self) -> list[str]:
        """Each training dataset as KIND:NAME=PATH (the contamination job's --datasets): its processed file, or
        its raw folder when udatasets is off."""
        return [f"{k}:{d}={self.tokenize_input(k, d)}" for k in KINDS for d in self.datasets(k)]

    def eval_stages(self) -> list[str]:
        wanted = self.steps["eval"]["stages"]
        return list(wanted) if wanted is not None else [s for s in EVAL_STAGES if self._stage_available(s)]

    def _stage_available(self, stage: str) -> bool:
        return stage == "base" or (self.enabled(f"train_{stage}") and self.enabled("mg2hf"))

    def base_model_path(self) -> str:
        return self.pipeline["base_model"]["path"]

    def base_model_inputs(self) -> list[str]:
        """What prepare reads to make the base model: the built-in's corpus files, or the source folder."""
        src = self.pipeline["base_model"]["src"]
        return [str(path) for path in BUILTIN_MODELS[src].DEMO_CORPUS] if src in BUILTIN_MODELS else [src]

    def context_length(self) -> int | None:
        """The base model's max_position_embeddings (None when its config does not say)."""
        src = self.pipeline["base_model"]["src"]
        if src in BUILTIN_MODELS:
            return BUILTIN_MODELS[src].MODEL_SHAPE["max_position_embeddings"]
        return config_checks.hf_context_length(src)


def _experiment_problems(exp: Experiment, pipeline_file: Path) -> list[str]:
    """Step combinations that leave a consumer without input, and missing inputs."""
    problems = []
    on = exp.enabled
    src = f"{pipeline_file}"

    def need(consumer: str, producer: str) -> None:
        if on(consumer) and not on(producer):
            problems.append(f"{src}: step '{consumer}' is on but needs '{producer}', which is off. "
                            f"Set steps.{producer}: true (or steps.{consumer}: false).")

    need("train_cpt", "tokenize_cpt")
    need("train_sft", "tokenize_sft")
    if on("train_cpt"):
        need("train_cpt", "hf2mg")
    if on("train_sft") and not on("train_cpt"):
        need("train_sft", "hf2mg")  # SFT starts from the converted base model when CPT is off
    for kind in KINDS:
        if on(f"tokenize_{kind}") and not exp.datasets(kind):
            problems.append(f"{src}: step 'tokenize_{kind}' is on but data.{kind} lists no dataset. "
                            f"Add one under data.{kind} or set steps.tokenize_{kind}: false.")
    problems += config_checks.source_problems(exp, pipeline_file) + config_checks.command_files_problems(exp)
    if on("eval"):
        for stage in exp.steps["eval"]["stages"] or []:
            if not exp._stage_available(stage):
                problems.append(f"{exp.step_file('eval')}: stages lists '{stage}', "
                                f"which needs steps train_{stage} and mg2hf on. Remove it or enable them.")
    base = exp.pipeline["base_model"]
    prefix = f"{exp.root}/model/base/"
    if not base["path"].startswith(prefix) or "/" in base["path"][len(prefix):]:
        problems.append(f"{src}: base_model.path must be a folder directly under {prefix} "
                        f"(got '{base['path']}'); the default is ${{DATAPOOL_ROOT}}/model/base/${{BASE_MODEL_NAME}}")
    if base["src"].startswith("builtin:") and base["src"] not in BUILTIN_MODELS:
        problems.append(f"{src}: base_model.src '{base['src']}' is not a built-in model "
                        f"(built-ins: {', '.join(BUILTIN_MODELS)})")
    elif not base["src"].startswith("builtin:") and not os.path.isdir(base["src"]):
        problems.append(f"{src}: base_model.src '{base['src']}' is not a folder. Point it at an HF model "
                        "folder (config.json + safetensors + tokenizer) or use builtin:tiny-qwen3.")
    problems += config_checks.stage_settings_problems(exp)
    problems += config_checks.base_model_problems(exp, pipeline_file)
    problems += config_checks.baseline_problems(exp, pipeline_file, EXPERIMENTS_DIR)
    problems += config_checks.primary_problems(exp, pipeline_file)
    if on("eval"):
        problems += evalsets.unknown_set_problems(exp.steps["eval"]["sets"] or [], exp.evalsets,
                                                  str(exp.step_file("eval")), "sets")
        problems += config_checks.eval_set_problems(exp)
    if on("udatasets"):
        listed = exp.steps["udatasets"]["decontaminate"]
        problems += evalsets.unknown_set_problems(listed, exp.evalsets, str(exp.step_file("udatasets")),
                                                  "decontaminate")
        problems += [f"{exp.step_file('udatasets')}: decontaminate lists '{n}', an lm_eval set; lm-eval reads its "
                     f"items itself, so only perplexity, multiple_choice and generation sets can be checked"
                     for n in listed if n in exp.evalsets and exp.evalsets[n].kind == "lm_eval"]
    return problems + config_checks.cross_step_problems(exp, exp.context_length())


def load_experiment(name: str, datapool: str, registry: dict[str, EvalSet] | None = None) -> Experiment:
    """Load, resolve and validate config/experiments/<name>/ (pipeline.yaml + steps/*.yaml); `registry`: the
    registered eval sets (load_registry() when not given)."""
    if not EXPERIMENT_NAME.match(name) or ".." in name:
        raise ConfigError(f"experiment name '{name}' is not allowed: use letters, digits, '_', '-', '.', "
                          "with no '/' and no '..'")
    config_dir = EXPERIMENTS_DIR / name
    pipeline_file = config_dir / "pipeline.yaml"
    if not pipeline_file.is_file():
        known = sorted(p.name for p in EXPERIMENTS_DIR.iterdir() if (p / "pipeline.yaml").is_file())
        raise ConfigError(f"experiment '{name}': {pipeline_file} not found (experiments: {', '.join(known)})")

    problems = config_checks.unknown_step_files(config_dir / "steps", STEP_FILES)
    raw: dict[str, tuple[Path, dict, dict]] = {"pipeline": (pipeline_file, load_yaml(pipeline_file),
                                                            load_schema("pipeline"))}
    for step, file_name in STEP_FILES.items():
        path = config_dir / "steps" / file_name
        raw[step] = (path, load_yaml(path) if path.exists() else {}, load_schema(STEP_SCHEMAS.get(step, step)))
    switches = raw["pipeline"][1].get("steps")
    warnings = config_checks.env_in_command_warnings({step: raw[step][:2] for step in ("hf2mg", "mg2hf")},
                                                     switches if isinstance(switches, dict) else {})
    for path, data, schema in raw.values():
        fill_defaults(data, schema)

    root = f"{datapool}/experiments/{name}"
    pipeline = raw["pipeline"][1]
    namespace = {"DATAPOOL_ROOT": root, "EXP": name, **pipeline,
                 **{step: raw[step][1] for step in STEPS}}
    base = pipeline.get("base_model") if isinstance(pipeline.get("base_model"), dict) else {}
    namespace["BASE_MODEL_NAME"] = base.get("name", "")
    namespace["BASE_MODEL_PATH"] = "${base_model.path}"

    resolved = {}
    for key, (path, data, schema) in raw.items():
        try:
            resolved[key] = substitute(data, namespace, str(path))
        except ConfigError as err:
            problems.append(str(err))
            continue
        problems += schema_problems(resolved[key], schema, str(path))
    if problems:
        raise ConfigError("\n".join(problems))
    registry = evalsets.load_registry() if registry is None else registry
    exp = Experiment(name, config_dir, root, resolved.pop("pipeline"), resolved, warnings, registry)
    problems = _experiment_problems(exp, pipeline_file)
    if problems:
        raise ConfigError("\n".join(problems))
    return exp


@dataclass
class RunConfig:
    """config/config.yaml (plus --config overrides) and every selected experiment."""

    datapool: str
    experiments: dict[str, Experiment]
    evalsets: dict[str, EvalSet]

    @property
    def warnings(self) -> list[str]:
        """What the user should know about the config but that does not stop the run."""
        return [w for e in self.experiments.values() for w in e.warnings]

    def exp(self, name: str) -> Experiment:
        return self.experiments[name]

    def resolved_config_json(self, exp: str) -> str:
        """The experiment's resolved config, {experiment, root, pipeline, steps}, for its report job to record as
        reports/config.json: what the comparison with a baseline diffs (`root` lets it set paths that only
        differ by the experiment's folder aside)."""
        e = self.experiments[exp]
        return json.dumps({"experiment": e.name, "root": e.root, "pipeline": e.pipeline, "steps": e.steps},
                          sort_keys=True)

    def baseline_inputs(self) -> list[str]:
        """The recorded config and eval results of baselines outside this run that exist now, so that the
        comparison is rebuilt when one of them is (a baseline in the run is there through its report)."""
        outside = {e.pipeline["baseline"] for e in self.experiments.values()} - {None, *self.experiments}
        files = [f"{self.datapool}/experiments/{b}/reports/{name}" for b in sorted(outside)
                 for name in ("config.json", *(f"eval/{s}/results.json" for s in EVAL_STAGES))]
        return [f for f in files if os.path.isfile(f)]

    def archive_plan_json(self) -> str:
        """What `snakemake archive` may keep of each experiment: {exp: {baseline, primary, config_dir,
        config_record, data: [[kind, dataset, processed file or raw folder]], stats, adapters}}."""
        plan = {}
        for name, e in self.experiments.items():
            datasets = [(k, d) for k in KINDS for d in e.datasets(k)]
            plan[name] = {
                "baseline": e.pipeline["baseline"], "primary": e.pipeline["primary"],
                "config_dir": str(e.config_dir), "config_record": e.config_record(),
                "data": [[k, d, e.tokenize_input(k, d)] for k, d in datasets],
                "stats": [f for f in e.step_outputs("udatasets") if f.endswith(".stats.json")],
                "adapters": sorted({f for k, d in datasets for f in self.udatasets_adapter_inputs(name, k, d)}),
            }
        return json.dumps(plan, sort_keys=True)

    def settings_json(self, exp: str, step: str) -> str:
        return json.dumps(self.experiments[exp].settings(step), sort_keys=True)

    def tokenize_settings_json(self, exp: str, step: str) -> str:
        """tokenize_cpt / tokenize_sft settings without `shards`: it changes the job plan, not the output."""
        return json.dumps({k: v for k, v in self.experiments[exp].settings(step).items() if k != "shards"},
                          sort_keys=True)

    def tokenize_shard_prefixes(self, exp: str, kind: str, dataset: str) -> list[str]:
        """The output prefixes of the dataset's tokenize shard jobs, in order; [] when `shards` is 1 (one job)."""
        e = self.experiments[exp]
        shards = e.steps[f"tokenize_{kind}"]["shards"]
        return [e.tokenize_shard_prefix(kind, dataset, i, shards) for i in range(shards)] if shards > 1 else []

    def tokenize_shard_files(self, exp: str, kind: str, dataset: str) -> list[str]:
        """Every file the dataset's tokenize shard jobs write ([] when `shards` is 1)."""
        prefixes = self.tokenize_shard_prefixes(exp, kind, dataset)
        return [f for prefix in prefixes for f in tokenize_outputs(prefix, kind)]

    def tokenize_threads(self, exp: str, kind: str) -> int:
        """The tokenize job's threads: the step's, or 1 for the job that only merges shards."""
        merges = self.experiments[exp].steps[f"tokenize_{kind}"]["shards"] > 1
        return 1 if merges else self.threads(exp, f"tokenize_{kind}")

    def udatasets_settings_json(self, exp: str, kind: str, dataset: str, job: str = "gather") -> str:
        """udatasets settings plus the dataset's adapter and reading keys: what changes the output of the
        `job` ('gather': everything; 'shard': all but the de-dup and augmentation keys, which only the gather
        job uses). `shards` is left out: it changes the job plan, not the output."""
        e = self.experiments[exp]
        reading = {k: v for k, v in e.datasets(kind)[dataset].items() if k != "sources"}
        left_out = ("shards", *UDATASETS_GATHER_ONLY) if job == "shard" else ("shards",)
        settings = {k: v for k, v in e.settings("udatasets").items() if k not in left_out}
        return json.dumps({**settings, **reading}, sort_keys=True)

    def udatasets_shard_files(self, exp: str, kind: str, dataset: str, with_earlier: bool = False) -> list[str]:
        """The dataset's shard files (the map jobs' outputs), in shard order; `with_earlier`: preceded by those
        of the datasets of the same kind before it in pipeline.yaml, whose kept records the gather job indexes
        first (de-dup across datasets)."""
        e = self.experiments[exp]
        shards = e.steps["udatasets"]["shards"]
        names = list(e.datasets(kind))
        datasets = names[: names.index(dataset) + 1] if with_earlier else [dataset]
        return [e.udatasets_shard(kind, d, i, shards) for d in datasets for i in range(shards)]

    def udatasets_tokenizer(self, exp: str) -> list[str]:
        """[the base model folder] when a token-length filter needs its tokenizer, else []."""
        e = self.experiments[exp]
        settings = e.steps["udatasets"]
        counts_tokens = settings["min_tokens"] is not None or settings["max_tokens"] is not None
        return [e.base_model_path()] if counts_tokens else []

    def udatasets_adapter_inputs(self, exp: str, kind: str, dataset: str) -> list[str]:
        """The custom adapter's file, so that editing it reruns udatasets; [] for a built-in adapter."""
        spec = self.experiments[exp].datasets(kind)[dataset]
        if spec["adapter"] != "custom":
            return []
        return [spec["adapter_function"].rpartition(":")[0]]

    def command_files(self, exp: str, step: str) -> list[str]:
        """The files hf2mg's or mg2hf's external `command` reads, so that editing one reruns the step."""
        return list(self.experiments[exp].steps[step]["command_files"])

    def feedback_inputs(self, exp: str) -> list[str]:
        """What an experiment's feedback pages read: its udatasets and eval outputs, and its baseline's when the
        baseline is in this run (a baseline outside it is read from the datapool as found)."""
        e = self.experiments[exp]
        baseline = self.experiments.get(e.pipeline["baseline"])
        return [p for side in (e, baseline) if side for step in ("udatasets", "eval") for p in side.step_outputs(step)]

    def feedback_baseline_args(self, exp: str) -> list[str]:
        """`--baseline-root <its DATAPOOL_ROOT>` for an experiment with a baseline, else nothing."""
        baseline = self.experiments[exp].pipeline["baseline"]
        return ["--baseline-root", f"{self.datapool}/experiments/{baseline}"] if baseline else []

    def evalsets_json(self, names: list[str]) -> str:
        """The named sets' definitions, for a job's params (an edited set definition reruns the job)."""
        return json.dumps([self.evalsets[n].to_dict() for n in names], sort_keys=True)

    def evalset_inputs(self, names: list[str]) -> list[str]:
        """The files that make up the named sets (definition and items), so that editing one reruns the job."""
        return [str(p) for n in names for p in evalsets.set_files(self.evalsets[n])]

    def slurm_resources(self, exp: str, step: str) -> dict:
        """The training job's SLURM request as Snakemake resources (nodes, gres, mem_mb, runtime), from the
        step's `slurm` settings; `gres` is empty for a job without GPUs (the executor then asks for none)."""
        request = self.experiments[exp].steps[step]["slurm"]
        gpus, gpu_type = request["gpus_per_node"], request["gpu_type"]
        gres = (f"gpu:{gpu_type}:{gpus}" if gpu_type else f"gpu:{gpus}") if gpus else ""
        return {"nodes": request["nodes"], "gres": gres, "mem_mb": request["mem_mb"], "runtime": request["runtime"]}

    def threads(self, exp: str, step: str) -> int:
        """The job's CPU threads: the step's `threads` per process, times its processes (training
        with nproc_per_node > 1 runs itself under torchrun)."""
        settings = self.experiments[exp].steps[step]
        return int(settings.get("threads", 1)) * int(settings.get("nproc_per_node", 1))


def set_job_environment() -> None:
    """Environment every job inherits (SLURM jobs too: they re-read the Snakefile): no hub access,
    and `python` in rule commands is the interpreter running Snakemake (the project's venv)."""
    os.environ.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    os.environ["PATH"] = os.pathsep.join((os.path.dirname(sys.executable), os.environ.get("PATH", "")))


def discover_experiments() -> list[str]:
    return sorted(p.name for p in EXPERIMENTS_DIR.iterdir() if (p / "pipeline.yaml").is_file())


def load_run_config(config: dict, source: str = "config/config.yaml") -> RunConfig:
    """Validate Snakemake's `config` (config.yaml merged with --config) and load the experiments."""
    config = fill_defaults(dict(config), load_schema("config"))
    if isinstance(config.get("experiments"), str):  # --config experiments=demo
        config["experiments"] = [config["experiments"]]
    problems = schema_problems(config, load_schema("config"), source)
    if problems:
        raise ConfigError("\n".join(problems))
    names = config["experiments"] or discover_experiments()
    registry = evalsets.load_registry()
    experiments, problems = {}, evalsets.registry_item_problems(registry)
    for name in names:
        try:
            experiments[name] = load_experiment(name, config["datapool"], registry)
        except ConfigError as err:
            problems.append(str(err))
    if problems:
        raise ConfigError("\n".join(problems))
    return RunConfig(config["datapool"], experiments, registry)
