"""hf2mg / mg2hf by an external `command`: real converter scripts run through the shell, with
placeholders substituted and quoted, side files copied, parity checked, failures reported."""
from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest
import torch
import yaml

from llmrunner.config import load_run_config
from llmrunner.convert.external import render_command
from llmrunner.convert.settings import ConvertSettings
from llmrunner.errors import ConfigError
from tests.convert.external_scripts import EXPORT_SCRIPT, IMPORT_SCRIPT
from tests.megatron.fixtures import load_safetensors, run_stage

pytestmark = pytest.mark.slow  # real external converters and training: `make test-fast` leaves them out


def write_script(folder: Path, name: str, text: str) -> str:
    """The script saved under `folder` (a path with a space), as a shell-quoted word for a command."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(text)
    return shlex.quote(str(folder / name))


def record_of(out: Path) -> dict:
    return json.loads((out / "convert_command.json").read_text())


def test_mg2hf_command_exports_and_side_files_are_copied(converted_tied: dict, tmp_path: Path) -> None:
    script = write_script(tmp_path / "my converters", "export.py", EXPORT_SCRIPT)
    out, command_log = tmp_path / "exported model" / "cpt", tmp_path / "logs" / "mg2hf.command.log"
    command = f"python {script} {{input}} {{iteration}} {{output}}"
    run_stage("convert", "mg2hf", "--mg", converted_tied["mg"], "--hf-side", converted_tied["hf"], "--out", out,
              "--command-log", command_log, settings={"command": command, "parity_tolerance": 1e-5})

    record = record_of(out)
    assert record["exit_code"] == 0 and record["command"] == command
    assert shlex.split(record["command_line"])[-3:] == [str(converted_tied["mg"]), "0", str(out)]
    assert "exported iteration 0" in command_log.read_text()
    # The exporter wrote no tokenizer: copied from --hf-side. save_pretrained's generation_config.json is kept.
    assert {"tokenizer.json", "tokenizer_config.json"} <= set(record["copied_hf_files"])
    assert record["kept_command_files"] == ["generation_config.json"]
    assert record["parity"]["ok"] is True and record["parity"]["max_abs_logit_diff"] < 1e-5
    assert json.loads((out / "parity.json").read_text()) == record["parity"]

    from transformers import AutoTokenizer
    assert AutoTokenizer.from_pretrained(out)("w1 w2").input_ids == [4, 5]
    original, exported = load_safetensors(converted_tied["hf"]), load_safetensors(out)
    assert set(original) == set(exported)
    assert all(torch.equal(exported[name], tensor) for name, tensor in original.items())


def test_hf2mg_command_writes_a_checkpoint_the_trainer_loads(converted_tied: dict, tmp_path: Path) -> None:
    script = write_script(tmp_path / "my converters", "import.py", IMPORT_SCRIPT)
    out = tmp_path / "mg base"
    # Third-party converters write no model.json: the stage derives it from the HF config.json.
    command = f"python {script} {{input}} {{output}} && rm {{output}}/model.json"
    run_stage("convert", "hf2mg", "--hf", converted_tied["hf"], "--out", out,
              "--command-log", tmp_path / "hf2mg.command.log", settings={"command": command})

    record = record_of(out)
    assert record["exit_code"] == 0 and record["iteration"] == 0
    assert record["model_json"] == f"derived from {converted_tied['hf'] / 'config.json'}"
    assert json.loads((out / "model.json").read_text()) == json.loads((converted_tied["mg"] / "model.json").read_text())
    assert record["parity"]["ok"] is True and record["parity"]["max_abs_logit_diff"] < 1e-5


def test_hf2mg_checkpoint_the_trainer_cannot_load_is_an_error(converted_tied: dict, tmp_path: Path) -> None:
    script = write_script(tmp_path / "my converters", "import.py", IMPORT_SCRIPT)
    # A converter that gets the shape wrong: model.json says untied, the checkpoint has no output layer.
    untie = "sed -i 's/\"tie_embeddings\": true/\"tie_embeddings\": false/' {output}/model.json"
    result = run_stage("convert", "hf2mg", "--hf", converted_tied["hf"], "--out", tmp_path / "mg",
                       "--command-log", tmp_path / "hf2mg.command.log",
                       settings={"command": f"python {script} {{input}} {{output}} && {untie}"}, check=False)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "does not load into the trainer's model" in result.stderr and "output_layer.weight" in result.stderr


def test_failing_command_names_itself_and_its_log(converted_tied: dict, tmp_path: Path) -> None:
    command_log = tmp_path / "mg2hf.command.log"
    result = run_stage("convert", "mg2hf", "--mg", converted_tied["mg"], "--hf-side", converted_tied["hf"],
                       "--out", tmp_path / "out", "--command-log", command_log,
                       settings={"command": "echo reading {input}; echo 'disk full' >&2; exit 3"}, check=False)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "error: the mg2hf command exited with code 3: echo reading" in result.stderr
    assert f"Its output is in {command_log}" in result.stderr and "disk full" in result.stderr
    assert "disk full" in command_log.read_text()


def test_output_that_the_next_step_cannot_read_is_an_error(converted_tied: dict, tmp_path: Path) -> None:
    args = ("--mg", converted_tied["mg"], "--hf-side", converted_tied["hf"], "--command-log", tmp_path / "c.log")
    nothing = run_stage("convert", "mg2hf", *args, "--out", tmp_path / "a", settings={"command": "true"},
                        check=False)
    assert nothing.returncode == 1
    assert "exited 0 but" in nothing.stderr and "is not an HF model folder" in nothing.stderr

    weights_only = "cp {input}/../back/config.json {input}/../back/model.safetensors {output}/"
    no_tokenizer = run_stage("convert", "mg2hf", *args, "--out", tmp_path / "b", check=False,
                             settings={"command": weights_only, "copy_hf_files": ["generation_config.json"]})
    assert no_tokenizer.returncode == 1 and "has no tokenizer" in no_tokenizer.stderr
    assert "add the tokenizer's files to `copy_hf_files`" in no_tokenizer.stderr

    hf2mg = run_stage("convert", "hf2mg", "--hf", converted_tied["hf"], "--out", tmp_path / "c",
                      "--command-log", tmp_path / "c.log", settings={"command": "touch {output}/model.pt"},
                      check=False)
    assert hf2mg.returncode == 1 and "wrote no Megatron checkpoint the trainer can read" in hf2mg.stderr


def test_placeholders_are_shell_quoted() -> None:
    values = {"input": "/data/my model", "output": "/out/it's here", "threads": 4}
    line = render_command("hf2mg", "convert --in {input} --out {output} -j {threads} --fmt '{{x}}'", values)
    assert shlex.split(line) == ["convert", "--in", "/data/my model", "--out", "/out/it's here", "-j", "4",
                                 "--fmt", "{x}"]


def test_unknown_placeholder_is_rejected(project: Path, converted_tied: dict, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"`command` uses unknown placeholder\(s\) \{ouput\}"):
        ConvertSettings.from_dict({"command": "convert {input} {ouput}"})

    # At config load, before any job runs: the file and the key are named.
    step_file = project / "config/experiments/demo/steps/5.mg2hf.yaml"
    step_file.write_text(yaml.safe_dump({"command": "convert {input} {ouput}"}))
    with pytest.raises(ConfigError, match=r"5\.mg2hf\.yaml: convert settings: `command` uses unknown "
                                          r"placeholder\(s\) \{ouput\}; known here: .*\{hf_side\}"):
        load_run_config({})
    # and a placeholder of the other step only: named with the placeholders this step knows
    step_file.unlink()
    (step_file.parent / "6.hf2mg.yaml").write_text(yaml.safe_dump({"command": "convert {input} {output} {hf_side}"}))
    with pytest.raises(ConfigError, match=r"6\.hf2mg\.yaml: `command` uses unknown placeholder\(s\) \{hf_side\}; "
                                          r"known here: \{input\}, \{output\}, \{threads\}"):
        load_run_config({})

    # {iteration} is mg2hf's only: hf2mg refuses it before running anything.
    result = run_stage("convert", "hf2mg", "--hf", converted_tied["hf"], "--out", tmp_path / "out",
                       settings={"command": "convert {input} {output} {iteration}"}, check=False)
    assert result.returncode == 1 and "unknown placeholder(s) {iteration}" in result.stderr
    assert "known here: {input}, {output}, {threads}" in result.stderr
    assert not (tmp_path / "out").exists()
