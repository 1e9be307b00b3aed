"""Config load: a base model folder whose config.json the built-in converter cannot map stops the run before any
job, naming the file, the keys and the external converter as the way out."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from llmrunner.config import load_run_config
from llmrunner.errors import ConfigError
from llmrunner.prepare.real_shapes import real_config
from tests.paths import DEMO, edit, write_yaml

QWEN3 = real_config("qwen3-0.6b-base")
LLAMA = real_config("llama-3.2-1b")
QWEN3_MOE = {**QWEN3, "architectures": ["Qwen3MoeForCausalLM"], "model_type": "qwen3_moe", "num_experts": 128,
             "num_experts_per_tok": 8, "moe_intermediate_size": 768}
DEMO_ONLY = {"experiments": ["demo"]}  # the shipped recipes need their own model folders
EXTERNAL = {"command": "convert {input} {output}"}


def use_base_model(config: dict, **steps: dict) -> Path:
    """Point the demo at a model folder holding `config` as its config.json; `steps`: step file -> keys."""
    folder = Path("models/base")
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps(config))
    pipeline = yaml.safe_load((DEMO / "pipeline.yaml").read_text())
    pipeline["base_model"]["src"] = str(folder)
    write_yaml(DEMO / "pipeline.yaml", pipeline)
    for file_name, values in steps.items():
        edit(DEMO / "steps" / file_name, **values)
    return folder / "config.json"


@pytest.mark.parametrize("config, keys", [
    (QWEN3_MOE, ["num_experts is 128: a mixture-of-experts model", "architectures is ['Qwen3MoeForCausalLM']"]),
    ({**LLAMA, "rope_scaling": {"rope_type": "yarn", "factor": 4.0}}, ["rope_scaling is {'rope_type': 'yarn'"]),
    ({**LLAMA, "attention_bias": True, "mlp_bias": True},
     ["attention_bias is True; the converter supports False for llama", "mlp_bias is True"]),
    ({**QWEN3, "hidden_act": "gelu"}, ["hidden_act is 'gelu'; the converter supports 'silu' for qwen3"]),
], ids=["moe", "rope-type", "biases", "activation"])
def test_an_unsupported_base_model_is_one_error_naming_keys_and_the_way_out(project, config, keys):
    config_file = use_base_model(config)
    with pytest.raises(ConfigError) as err:
        load_run_config(DEMO_ONLY)
    [problem] = [line for line in str(err.value).splitlines() if "config.json" in line]
    assert f"pipeline.yaml: base_model.src: {config_file}: " in problem
    for key in keys:
        assert key in problem, key
    assert ("The built-in converter (hf2mg, mg2hf on, `command` null) cannot convert this model: set `command:` in "
            f"{DEMO}/steps/6.hf2mg.yaml and {DEMO}/steps/5.mg2hf.yaml") in problem
    assert "docs/stages.md" in problem


def test_a_built_in_converter_on_one_side_is_still_named(project):
    use_base_model(QWEN3_MOE, **{"6.hf2mg.yaml": EXTERNAL})
    with pytest.raises(ConfigError, match=r"The built-in converter \(mg2hf on, `command` null\) cannot convert"):
        load_run_config(DEMO_ONLY)


def test_external_converters_take_any_model_and_supported_ones_load(project):
    use_base_model(QWEN3_MOE, **{"6.hf2mg.yaml": EXTERNAL, "5.mg2hf.yaml": EXTERNAL})
    assert load_run_config(DEMO_ONLY).exp("demo").steps["hf2mg"]["command"] == EXTERNAL["command"]
    Path("models/base/config.json").write_text(json.dumps(QWEN3))
    for file_name in ("6.hf2mg.yaml", "5.mg2hf.yaml"):
        edit(DEMO / "steps" / file_name, command=None)
    assert load_run_config(DEMO_ONLY).exp("demo").context_length() == 32768


def test_a_config_json_that_is_not_json_is_named(project):
    use_base_model({})
    Path("models/base/config.json").write_text("{not json")
    with pytest.raises(ConfigError, match=r"base_model.src: models/base/config.json is not valid JSON"):
        load_run_config(DEMO_ONLY)
