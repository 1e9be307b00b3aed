"""An external converter (`command` in the step config) in place of the built-in one.

The command runs through bash with its placeholders replaced by shell-quoted paths. Then the
output is checked for what the next step reads (hf2mg: a Megatron checkpoint the trainer loads;
mg2hf: an HF folder with config.json and weights), the HF side files are copied (mg2hf), the
same logits parity check as after a built-in conversion runs, and what ran is recorded in
`<output>/convert_command.json`.
"""
from __future__ import annotations

import json
import logging
import os
import shlex
import subprocess
import sys
from pathlib import Path

import torch

from llmrunner.convert.core import copy_side_files, fresh_output
from llmrunner.convert.parity import hf_logits, megatron_logits, parity_input, record_parity
from llmrunner.convert.settings import PLACEHOLDERS, command_placeholders, command_problems
from llmrunner.errors import ConfigError, StageError
from llmrunner.megatron import checkpoint, parallel
from llmrunner.megatron.hf_mapping import shape_from_hf_config
from llmrunner.megatron.model import MODEL_JSON, ModelShape, build_gpt_model

log = logging.getLogger(__name__)

RECORD_JSON = "convert_command.json"
_LOG_TAIL_LINES = 20


def render_command(step: str, template: str, values: dict[str, object]) -> str:
    """The command line: each placeholder replaced by its value, shell-quoted."""
    problems = command_problems(template, PLACEHOLDERS[step])
    if problems:
        raise ConfigError(f"{step} settings: " + "; ".join(problems))
    quoted = {name: shlex.quote(str(values[name])) for name in command_placeholders(template)}
    return template.format_map(quoted)


def _tail(path: Path) -> str:
    lines = path.read_text(errors="replace").splitlines()
    return "\n".join(lines[-_LOG_TAIL_LINES:]) or "(no output)"


def run_command(step: str, template: str, values: dict[str, object], out: Path, command_log: Path) -> dict:
    """Run the command (bash, output to command_log); record it in out; StageError when it fails.

    `python` in the command is the interpreter running this stage (the project's environment).
    """
    line = render_command(step, template, values)
    fresh_output(out, RECORD_JSON)  # clears only what an earlier external conversion wrote
    command_log.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PATH": os.pathsep.join((os.path.dirname(sys.executable), os.environ.get("PATH", "")))}
    log.info("%s: running %s (output: %s)", step, line, command_log)
    with open(command_log, "w") as log_file:
        exit_code = subprocess.run(["bash", "-c", line], stdin=subprocess.DEVNULL, stdout=log_file,
                                   stderr=subprocess.STDOUT, env=env).returncode
    record = {"step": step, "command": template, "command_line": line, "exit_code": exit_code,
              "log": str(command_log)}
    write_record(out, record)
    if exit_code != 0:
        raise StageError(f"the {step} command exited with code {exit_code}: {line}\nIts output is in "
                         f"{command_log}; the last lines:\n{_tail(command_log)}")
    return record


def write_record(out: Path, record: dict) -> None:
    (out / RECORD_JSON).write_text(json.dumps(record, indent=2) + "\n")


def _held(folder: Path) -> str:
    return ", ".join(sorted(p.name for p in folder.iterdir() if p.name != RECORD_JSON)) or "nothing"


def _megatron_model(folder: Path, shape: ModelShape, threads: int, iteration: int | None = None):
    """A GPTModel of `shape` with the checkpoint in `folder` loaded, as the trainer loads it."""
    torch.set_num_threads(threads)
    parallel.init_distributed()
    parallel.seed_everything(0)
    model = build_gpt_model(shape)
    try:
        checkpoint.load_checkpoint(folder, model, iteration=iteration)
    except StageError as err:
        raise StageError(f"the Megatron checkpoint {folder} does not load into the trainer's model: {err}") from err
    return model


def _hf_logits_of_output(out: Path, ids: torch.Tensor) -> torch.Tensor:
    try:
        return hf_logits(out, ids)
    except (OSError, ValueError, KeyError, RuntimeError) as err:
        raise StageError(f"transformers cannot load the command's output {out} (eval loads it the same way): "
                         f"{type(err).__name__}: {err}") from err


def convert_hf_to_megatron_external(hf_dir: Path, out: Path, *, command: str, command_log: Path,
                                    tolerance: float, threads: int) -> dict:
    """hf2mg by `command`; check the trainer can load its output; parity; return the record."""
    if not (hf_dir / "config.json").is_file():
        raise StageError(f"{hf_dir / 'config.json'} is missing; {hf_dir} is not an HF model folder")
    record = run_command("hf2mg", command, {"input": hf_dir, "output": out, "threads": threads}, out, command_log)
    try:
        iteration = checkpoint.require_latest_iteration(out)
    except StageError as err:
        raise StageError(f"the hf2mg command exited 0 but wrote no Megatron checkpoint the trainer can read: "
                         f"{err} (its output: {command_log})") from err
    if not (out / MODEL_JSON).is_file():  # third-party converters do not write our model.json
        shape_from_hf_config(json.loads((hf_dir / "config.json").read_text()), str(hf_dir / "config.json")).save(out)
        record["model_json"] = f"derived from {hf_dir / 'config.json'}"
    shape = ModelShape.load(out)
    model = _megatron_model(out, shape, threads)
    ids = parity_input(shape)
    record["iteration"] = iteration
    compared = {"architecture": shape.architecture, "reference": f"HF model {hf_dir}",
                "converted": f"Megatron checkpoint {out} iteration {iteration}, written by the hf2mg command"}
    record["parity"] = record_parity(out, hf_logits(hf_dir, ids), megatron_logits(model, ids), tolerance, compared)
    write_record(out, record)
    return record


def _check_hf_output(out: Path, command_log: Path) -> None:
    weights = [p for pattern in ("*.safetensors", "pytorch_model*.bin") for p in out.glob(pattern)]
    if not (out / "config.json").is_file() or not weights:
        raise StageError(f"the mg2hf command exited 0 but {out} is not an HF model folder (config.json and "
                         f"*.safetensors or pytorch_model*.bin); it holds {_held(out)}. Its output: {command_log}")


def convert_megatron_to_hf_external(mg_dir: Path, hf_side: Path, out: Path, *, command: str, command_log: Path,
                                    patterns: tuple[str, ...], tolerance: float, threads: int) -> dict:
    """mg2hf by `command`; check its HF folder, copy side files, parity when mg_dir has model.json."""
    iteration = checkpoint.require_latest_iteration(mg_dir)
    if not hf_side.is_dir():
        raise StageError(f"--hf-side {hf_side} is not a folder; point it at the base model's HF folder")
    values = {"input": mg_dir, "output": out, "hf_side": hf_side, "iteration": iteration, "threads": threads}
    record = run_command("mg2hf", command, values, out, command_log)
    _check_hf_output(out, command_log)
    record["copied_hf_files"], record["kept_command_files"] = copy_side_files(hf_side, out, patterns)
    record["iteration"] = iteration
    if (mg_dir / MODEL_JSON).is_file():
        shape = ModelShape.load(mg_dir)
        model = _megatron_model(mg_dir, shape, threads, iteration)
        ids = parity_input(shape)
        compared = {"architecture": shape.architecture, "reference": f"Megatron checkpoint {mg_dir} iteration "
                    f"{iteration}", "converted": f"HF model {out}, written by the mg2hf command"}
        record["parity"] = record_parity(out, megatron_logits(model, ids), _hf_logits_of_output(out, ids),
                                         tolerance, compared)
    else:
        record["parity"] = f"skipped: {mg_dir} has no {MODEL_JSON}, so the built-in model cannot load it"
        log.warning("mg2hf: parity %s", record["parity"])
    write_record(out, record)
    return record
