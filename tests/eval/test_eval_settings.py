"""EvalSettings and the checks before a run: every user mistake becomes one ConfigError/StageError naming the fix."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from llmrunner.errors import ConfigError, StageError
from llmrunner.eval.core import check_model_dir, resolve_dtype
from llmrunner.eval.settings import EvalSettings
from llmrunner.eval.tasks import length_problems
from llmrunner.evalsets import EvalSet


def test_defaults_and_full_dict() -> None:
    s = EvalSettings.from_dict({"sets": ["wordnet_mc"], "batch_size": 4, "limit": 10, "dtype": "bfloat16"})
    assert (s.sets, s.batch_size, s.max_length, s.limit, s.threads, s.dtype) == (
        ["wordnet_mc"], 4, 512, 10, 2, "bfloat16")
    assert EvalSettings.from_dict({}).sets is None  # every registered set
    assert EvalSettings.from_dict({}).dtype == "auto"


def test_problems_are_collected_into_one_error() -> None:
    with pytest.raises(ConfigError) as err:
        EvalSettings.from_dict({"sets": [], "dtype": "fp8", "batch_size": 0, "limit": True})
    text = str(err.value)
    for part in ("key 'sets'", "key 'dtype'", "'fp8' is not one of", "key 'batch_size'", "key 'limit'"):
        assert part in text
    with pytest.raises(ConfigError, match="key 'sets'"):
        EvalSettings.from_dict({"sets": ["a", "a"]})


def test_old_keys_are_unknown() -> None:
    with pytest.raises(ConfigError, match="unknown key.*'tasks'"):
        EvalSettings.from_dict({"tasks": ["heldout_ppl"]})


def test_resolve_dtype() -> None:
    assert resolve_dtype("float16") == "float16" and resolve_dtype("bfloat16") == "bfloat16"
    if not torch.cuda.is_available():
        assert resolve_dtype("auto") == "float32"  # also for a bfloat16 export: transformers upcasts it on load


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_auto_dtype_is_bfloat16_on_a_gpu_that_has_it() -> None:
    assert resolve_dtype("auto") == ("bfloat16" if torch.cuda.is_bf16_supported() else "float32")
    assert resolve_dtype("float32") == "float32"  # an explicit setting wins


def test_answer_must_fit_max_length() -> None:
    chat = EvalSet.from_dict("chat", {"kind": "generation", "data": "x.jsonl", "max_new_tokens": 64})
    text = EvalSet.from_dict("text", {"kind": "perplexity", "data": "x.jsonl"})
    assert length_problems([chat, text], 512, "8.eval.yaml") == []
    [problem] = length_problems([chat, text], 64, "8.eval.yaml")
    assert "config/evalsets/chat.yaml: max_new_tokens 64" in problem and "max_length 64 (8.eval.yaml)" in problem


def test_model_dir_without_weights_lists_contents(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(StageError, match=r"not an HF model folder.*\['config.json'\]"):
        check_model_dir(tmp_path)
