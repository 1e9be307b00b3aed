"""Config loading: schema validation, ${NAME} substitution, step switches, clear errors."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from llmrunner.config import discover_experiments, load_experiment, load_run_config, substitute
from llmrunner.errors import ConfigError
from tests.paths import DEMO, REPO, edit, write_yaml


@pytest.mark.parametrize("name", sorted(p.name for p in (REPO / "config/experiments").iterdir()))
def test_every_shipped_experiment_validates(name, monkeypatch, recipe_models):
    monkeypatch.chdir(REPO)
    monkeypatch.setenv("LLMRUNNER_MODELS", str(recipe_models))  # the real-model recipes' model folders
    exp = load_experiment(name, "datapool")
    assert exp.root == f"datapool/experiments/{name}"


def test_demo_resolves_paths_and_defaults(project):
    exp = load_run_config({}).exp("demo")
    assert exp.base_model_path() == "datapool/experiments/demo/model/base/tiny-qwen3"
    # a typed reference keeps its type: seq_length: ${tokenize_sft.max_tokens}
    assert exp.steps["train_sft"]["seq_length"] == exp.steps["tokenize_sft"]["max_tokens"] == 512
    assert exp.steps["train_cpt"]["keep_last"] == 2  # schema default filled
    assert exp.eval_stages() == ["base", "cpt", "sft"]
    assert "threads" not in exp.settings("train_cpt")  # runtime only: no rerun when it changes


def test_unknown_key_names_file_key_and_suggestion(project):
    edit(DEMO / "steps/4.train_cpt.yaml", train_iter=5)
    with pytest.raises(ConfigError) as err:
        load_run_config({})
    assert "4.train_cpt.yaml: unknown key 'train_iter' (did you mean 'train_iters'?)" in str(err.value)


def test_nested_unknown_key_and_wrong_type_are_reported_together(project):
    pipeline = yaml.safe_load((DEMO / "pipeline.yaml").read_text())
    pipeline["base_model"]["nmae"] = "x"
    pipeline["steps"]["eval"] = "yes"
    write_yaml(DEMO / "pipeline.yaml", pipeline)
    with pytest.raises(ConfigError) as err:
        load_run_config({})
    msg = str(err.value)
    assert "unknown key 'base_model.nmae' (did you mean 'name'?)" in msg
    assert "key 'steps.eval': 'yes' is not of type 'boolean'" in msg


def test_override_of_run_config_is_validated(project):
    with pytest.raises(ConfigError, match="unknown key 'datapol'"):
        load_run_config({"datapol": "x"})


def test_substitution_types_env_and_errors(monkeypatch):
    ns = {"a": {"b": 3}, "name": "x", "loop1": "${loop2}", "loop2": "${loop1}"}
    assert substitute("${a.b}", ns, "f") == 3
    assert substitute("run-${a.b}-${name}", ns, "f") == "run-3-x"
    monkeypatch.setenv("LLMR_TEST", "v")
    assert substitute(["${env:LLMR_TEST}"], ns, "f") == ["v"]
    with pytest.raises(ConfigError, match=r"f: \$\{nope\} is not defined"):
        substitute("${nope}", ns, "f")
    with pytest.raises(ConfigError, match="cycle: loop1 → loop2 → loop1"):
        substitute("${loop1}", ns, "f")
    with pytest.raises(ConfigError, match="MISSING_VAR"):
        substitute("${env:MISSING_VAR}", ns, "f")


def test_undefined_reference_in_a_step_file(project):
    edit(DEMO / "steps/7.train_sft.yaml", seq_length="${tokenize_sft.max_tokenz}")
    with pytest.raises(ConfigError, match=r"7.train_sft.yaml: \$\{tokenize_sft.max_tokenz\} is not defined"):
        load_run_config({})


@pytest.mark.parametrize("name", ["../evil", "a/b", "..", "x..y"])
def test_bad_experiment_names_are_rejected(project, name):
    with pytest.raises(ConfigError, match="not allowed"):
        load_run_config({"experiments": [name]})


def test_unknown_experiment_lists_known_ones(project):
    with pytest.raises(ConfigError, match=r"experiment 'nope'.*experiments: demo"):
        load_run_config({"experiments": ["nope"]})


def test_missing_raw_data_and_base_model_are_named(project):
    pipeline = yaml.safe_load((DEMO / "pipeline.yaml").read_text())
    pipeline["data"]["cpt"]["python_docs"]["sources"] = ["raw/missing.jsonl"]
    pipeline["base_model"]["src"] = "/models/none"
    write_yaml(DEMO / "pipeline.yaml", pipeline)
    with pytest.raises(ConfigError) as err:
        load_run_config({})
    assert "data.cpt.python_docs.sources: raw/missing.jsonl does not exist (paths are relative to" in str(err.value)
    assert "base_model.src '/models/none' is not a folder" in str(err.value)


def test_consumer_without_producer_is_rejected(project):
    pipeline = yaml.safe_load((DEMO / "pipeline.yaml").read_text())
    pipeline["steps"]["tokenize_cpt"] = False
    write_yaml(DEMO / "pipeline.yaml", pipeline)
    with pytest.raises(ConfigError, match="'train_cpt' is on but needs 'tokenize_cpt'.*Set steps.tokenize_cpt: true"):
        load_run_config({})


def test_cpt_off_sft_starts_from_base_and_eval_skips_cpt(project):
    pipeline = yaml.safe_load((DEMO / "pipeline.yaml").read_text())
    pipeline["steps"]["train_cpt"] = False
    write_yaml(DEMO / "pipeline.yaml", pipeline)
    exp = load_run_config({}).exp("demo")
    assert exp.train_init("sft") == (exp.mg_base(), exp.mg_base())
    assert exp.eval_stages() == ["base", "sft"]
    assert exp.step_outputs("train_cpt") == [] and exp.step_outputs("mg2hf") == [exp.hf_model("sft")]


def test_sft_off_ends_at_cpt(project):
    pipeline = yaml.safe_load((DEMO / "pipeline.yaml").read_text())
    pipeline["steps"]["train_sft"] = False
    write_yaml(DEMO / "pipeline.yaml", pipeline)
    exp = load_run_config({}).exp("demo")
    assert exp.eval_stages() == ["base", "cpt"]
    assert exp.train_init("cpt") == (exp.mg_base(), exp.mg_base())


def test_explicit_eval_stage_that_cannot_exist_is_rejected(project):
    pipeline = yaml.safe_load((DEMO / "pipeline.yaml").read_text())
    pipeline["steps"]["train_sft"] = False
    write_yaml(DEMO / "pipeline.yaml", pipeline)
    edit(DEMO / "steps/8.eval.yaml", stages=["base", "sft"])
    with pytest.raises(ConfigError, match="stages lists 'sft'"):
        load_run_config({})


def test_udatasets_off_tokenizes_raw_folder(project):
    pipeline = yaml.safe_load((DEMO / "pipeline.yaml").read_text())
    pipeline["steps"]["udatasets"] = False
    write_yaml(DEMO / "pipeline.yaml", pipeline)
    exp = load_run_config({}).exp("demo")
    assert exp.tokenize_input("cpt", "python_docs") == exp.raw_dir("cpt", "python_docs")


def test_settings_json_is_stable_and_carries_adapter(project):
    run = load_run_config({})
    settings = json.loads(run.udatasets_settings_json("demo", "sft", "wordnet_chat"))
    assert settings["adapter"] == "messages" and settings["dedup"] == "exact"
    assert run.settings_json("demo", "train_cpt") == run.settings_json("demo", "train_cpt")


def test_custom_adapter_reaches_the_rule_and_its_file_is_an_input(project):
    pipeline = yaml.safe_load((DEMO / "pipeline.yaml").read_text())
    pipeline["data"]["sft"]["wordnet_chat"].update(adapter="custom", adapter_function="adapters.py:chat")
    write_yaml(DEMO / "pipeline.yaml", pipeline)
    Path("adapters.py").write_text("def chat(record):\n    return record\n")
    run = load_run_config({})
    settings = json.loads(run.udatasets_settings_json("demo", "sft", "wordnet_chat"))
    assert settings["adapter_function"] == "adapters.py:chat" and settings["txt_mode"] == "document"
    assert "sources" not in settings
    assert run.udatasets_adapter_inputs("demo", "sft", "wordnet_chat") == ["adapters.py"]
    assert run.udatasets_adapter_inputs("demo", "cpt", "python_docs") == []
    Path("adapters.py").unlink()
    with pytest.raises(ConfigError, match=r"data\.sft\.wordnet_chat\.adapter_function: the file 'adapters.py' "
                                          r"does not exist .*set it to 'path/to/file.py:function'"):
        load_run_config({})  # reported with every other problem, before any job


def test_custom_adapter_without_function_is_a_schema_error(project):
    pipeline = yaml.safe_load((DEMO / "pipeline.yaml").read_text())
    pipeline["data"]["cpt"]["python_docs"].update(adapter="custom", txt_mode="lines")
    write_yaml(DEMO / "pipeline.yaml", pipeline)
    with pytest.raises(ConfigError) as err:
        load_run_config({})
    assert "key 'data.cpt.python_docs': 'adapter_function' is a required property" in str(err.value)
    assert "key 'data.cpt.python_docs.txt_mode': 'lines' is not one of" in str(err.value)


def test_command_files_are_inputs_and_are_checked(project):
    Path("export.py").write_text("print('exported')\n")
    edit(DEMO / "steps/5.mg2hf.yaml", command="python export.py {input} {output}", command_files=["export.py"])
    run = load_run_config({})
    assert run.command_files("demo", "mg2hf") == ["export.py"] and run.command_files("demo", "hf2mg") == []
    assert "command_files" not in json.loads(run.settings_json("demo", "mg2hf"))  # an input, not a param

    Path("export.py").unlink()
    edit(DEMO / "steps/6.hf2mg.yaml", command_files=["import.py"])
    with pytest.raises(ConfigError) as err:
        load_run_config({})
    msg = str(err.value)
    assert "5.mg2hf.yaml: command_files: 'export.py' is not a file (paths are relative to" in msg
    assert "6.hf2mg.yaml: convert settings: `command_files` is set but `command` is not" in msg
    assert "6.hf2mg.yaml: command_files: 'import.py' is not a file" in msg


def test_discover_experiments(project):
    (Path("config/experiments/empty")).mkdir()  # no pipeline.yaml: not an experiment
    assert discover_experiments() == ["demo", "demo-no-python_docs"]


@pytest.mark.parametrize("name", sorted(p.name for p in (REPO / "config/experiments").iterdir()))
def test_every_shipped_step_config_builds_its_stage_settings(name, monkeypatch, recipe_models):
    """What the rules pass as --settings is accepted by each stage (litgpt's test_config_hub)."""
    from llmrunner.config_checks import STAGE_SETTINGS
    from llmrunner.udatasets.settings import UdatasetsSettings

    monkeypatch.chdir(REPO)
    monkeypatch.setenv("LLMRUNNER_MODELS", str(recipe_models))
    run = load_run_config({"experiments": [name]})
    exp = run.exp(name)
    for step, settings_class in STAGE_SETTINGS.items():
        settings_class.from_dict(json.loads(run.settings_json(name, step)))
    for kind in ("cpt", "sft"):
        for dataset in exp.datasets(kind):
            UdatasetsSettings.from_dict(json.loads(run.udatasets_settings_json(name, kind, dataset)))


@pytest.mark.parametrize("file_name, values, expected", [
    ("4.train_cpt.yaml", {"train_iters": 10, "warmup_iters": 10},
     "4.train_cpt.yaml: train settings: `warmup_iters` 10 must be below `train_iters` 10"),
    ("4.train_cpt.yaml", {"global_batch_size": 12, "micro_batch_size": 8},
     "4.train_cpt.yaml: train settings: `global_batch_size` 12 is not a multiple of micro_batch_size"),
    ("7.train_sft.yaml", {"nproc_per_node": 3, "tensor_parallel": 2},
     "7.train_sft.yaml: train settings: `nproc_per_node` 3 is not a multiple of tensor_parallel x pipeline_parallel"),
    ("7.train_sft.yaml", {"seq_length": 1024},
     "7.train_sft.yaml: seq_length 1024 is above tokenize_sft's max_tokens 512"),
    ("4.train_cpt.yaml", {"seq_length": 4096},
     "4.train_cpt.yaml: seq_length 4096 is above the base model's max_position_embeddings 2048"),
    ("8.eval.yaml", {"max_length": 4096},
     "8.eval.yaml: max_length 4096 is above the base model's max_position_embeddings 2048"),
    ("1.udatasets.yaml", {"max_chars": 5, "min_chars": 10},
     "1.udatasets.yaml: udatasets settings: max_chars (5) is below min_chars (10)"),
    ("1.udatasets.yaml", {"augment": {"system_prompt_fraction": 0.5}},
     "udatasets settings: augment.system_prompts: give at least one prompt"),
    ("5.mg2hf.yaml", {"command_files": ["x.py"]},
     "5.mg2hf.yaml: convert settings: `command_files` is set but `command` is not"),
])
def test_rules_across_keys_stop_the_run_at_load(project, file_name, values, expected):
    """Every stage's settings are built when the config loads: a rule that involves several keys (or steps)
    stops the run before the first job, naming the file, the keys and the fix."""
    if file_name == "5.mg2hf.yaml":
        Path("x.py").write_text("")
    edit(DEMO / "steps" / file_name, **values)
    with pytest.raises(ConfigError) as err:
        load_run_config({})
    assert expected in str(err.value)


def test_a_misnamed_step_file_is_an_error(project):
    (DEMO / "steps/4.train_cpt.yaml").unlink()
    (DEMO / "steps/4.train-cpt.yaml").write_text("train_iters: 5\n")
    (DEMO / "steps/notes.txt").write_text("my notes\n")
    (DEMO / "steps/7.train_sft.yaml.bak").write_text("lr: 1.0\n")
    (DEMO / "steps/.gitkeep").write_text("")  # hidden files are not read and not reported
    with pytest.raises(ConfigError) as err:
        load_run_config({})
    message = str(err.value)
    assert "steps/4.train-cpt.yaml: not a step file, so it would be ignored; rename it to 4.train_cpt.yaml" in message
    assert "steps/notes.txt: not a step file, so it would be ignored; step files are 1.udatasets.yaml," in message
    # never told to rename a backup over the step file beside it
    assert ("steps/7.train_sft.yaml.bak: not a step file, so it would be ignored; it looks like 7.train_sft.yaml, "
            "which exists: move what it holds there and remove it") in message
    assert ".gitkeep" not in message


def test_env_in_a_command_warns_at_load(project, monkeypatch):
    monkeypatch.setenv("MY_TOKEN", "s3cret")
    edit(DEMO / "steps/6.hf2mg.yaml", command="convert {input} {output} --token ${env:MY_TOKEN}")
    [warning] = load_run_config({}).warnings
    assert "6.hf2mg.yaml: `command` uses ${env:...}" in warning and "$VAR" in warning
    edit(DEMO / "steps/6.hf2mg.yaml", command='convert {input} {output} --token "$MY_TOKEN"')
    assert load_run_config({}).warnings == []


def test_a_fifo_source_is_named_as_such(project):
    import os

    pipeline = yaml.safe_load((DEMO / "pipeline.yaml").read_text())
    os.mkfifo("pipe.jsonl")
    pipeline["data"]["cpt"]["python_docs"]["sources"] = ["pipe.jsonl"]
    write_yaml(DEMO / "pipeline.yaml", pipeline)
    with pytest.raises(ConfigError, match=r"data\.cpt\.python_docs\.sources: pipe\.jsonl is a FIFO.*, not a regular "
                                          r"file; give a file"):
        load_run_config({})


def _second_experiment(name: str, **changes) -> Path:
    """A copy of the demo experiment as config/experiments/<name>, with pipeline.yaml `changes`."""
    shutil.copytree(DEMO, DEMO.parent / name)
    edit(DEMO.parent / name / "pipeline.yaml", **changes)
    return DEMO.parent / name / "pipeline.yaml"


def test_baseline_and_primary_load(project):
    _second_experiment("bigger_data")
    edit(DEMO / "pipeline.yaml", baseline="bigger_data", primary=["heldout_text:bits_per_byte", "wordnet_mc:acc",
                                                                   "wordnet_chat:chrf"])
    exp = load_experiment("demo", "datapool")
    assert exp.pipeline["baseline"] == "bigger_data"
    assert load_experiment("bigger_data", "datapool").pipeline["baseline"] is None  # the schema's default
    assert json.loads(load_run_config({"experiments": ["demo"]}).resolved_config_json("demo"))["pipeline"][
        "primary"][0] == "heldout_text:bits_per_byte"


@pytest.mark.parametrize("baseline, expected", [
    ("demo", "pipeline.yaml: baseline 'demo' names this experiment itself; set it to another experiment, or to null"),
    ("dmeo2", "pipeline.yaml: baseline 'dmeo2': no experiment config/experiments/dmeo2/pipeline.yaml; did you mean "
              "demo2, demo? experiments: demo, demo-no-python_docs, demo2"),
])
def test_a_bad_baseline_is_named_with_the_fix(project, baseline, expected):
    _second_experiment("demo2")
    edit(DEMO / "pipeline.yaml", baseline=baseline)
    with pytest.raises(ConfigError) as err:
        load_run_config({"experiments": ["demo"]})
    assert f"{DEMO / 'pipeline.yaml'}: {expected.split(': ', 1)[1]}" in str(err.value)


def test_a_baseline_cycle_is_an_error_before_any_job(project):
    """demo → b → c → demo: each one of them names the cycle; c's config is read only for its baseline."""
    _second_experiment("b", baseline="c")
    _second_experiment("c", baseline="demo")
    edit(DEMO / "pipeline.yaml", baseline="b")
    with pytest.raises(ConfigError) as err:
        load_run_config({"experiments": ["demo"]})
    assert (f"{DEMO / 'pipeline.yaml'}: baseline 'b': baselines form a cycle (demo → b → c → demo); an experiment "
            "cannot be compared against one that is compared against it") in str(err.value)
    edit(DEMO.parent / "c" / "pipeline.yaml", baseline=None)
    assert load_run_config({"experiments": ["demo"]}).exp("demo").pipeline["baseline"] == "b"


@pytest.mark.parametrize("primary, expected", [
    (["heldout:bits_per_byte"], "primary lists 'heldout', which is not a registered eval set (close names: "
                                "heldout_text, heldout_python_docs)"),
    (["heldout_text:acc"], "primary lists 'heldout_text:acc', but heldout_text is a perplexity set, whose metric is "
                           "bits_per_byte: write 'heldout_text:bits_per_byte'"),
    (["wordnet_chat:rouge_l"], "wordnet_chat is a generation set, whose metric is chrf"),
    (["heldout_text"], "key 'primary.0': 'heldout_text' does not match"),
])
def test_a_bad_primary_metric_is_named_with_the_fix(project, primary, expected):
    edit(DEMO / "pipeline.yaml", primary=primary)
    with pytest.raises(ConfigError) as err:
        load_run_config({})
    assert expected in str(err.value)


def test_a_primary_set_the_eval_step_does_not_score(project):
    edit(DEMO / "steps/8.eval.yaml", sets=["wordnet_mc"])
    edit(DEMO / "pipeline.yaml", primary=["heldout_text:bits_per_byte"])
    with pytest.raises(ConfigError, match=r"primary lists 'heldout_text:bits_per_byte', but "
                                          r"config/experiments/demo/steps/8.eval.yaml `sets` does not list it"):
        load_run_config({})
