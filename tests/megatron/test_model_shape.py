"""model.json: the shape every Megatron checkpoint folder carries."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from llmrunner.errors import StageError
from llmrunner.megatron.model import MODEL_JSON, ModelShape

SHAPE = ModelShape(vocab_size=8192, hidden_size=128, num_layers=4, num_attention_heads=4, num_key_value_heads=2,
                   head_dim=32, ffn_hidden_size=384, rope_theta=1e6, norm_eps=1e-6, tie_embeddings=True,
                   max_position_embeddings=2048, eos_token_id=0, pad_token_id=0)


def test_save_and_load(tmp_path: Path) -> None:
    SHAPE.save(tmp_path)
    data = json.loads((tmp_path / MODEL_JSON).read_text())
    assert data["architecture"] == "qwen3" and data["tie_embeddings"] is True
    assert ModelShape.load(tmp_path) == SHAPE


def test_missing_and_unknown_keys_are_named(tmp_path: Path) -> None:
    data = dataclasses.asdict(SHAPE)
    del data["head_dim"]
    data["hidden"] = 1
    (tmp_path / MODEL_JSON).write_text(json.dumps(data))
    with pytest.raises(StageError, match=r"missing keys \['head_dim'\], unknown keys \['hidden'\]"):
        ModelShape.load(tmp_path)


def test_missing_model_json_says_what_the_folder_is(tmp_path: Path) -> None:
    with pytest.raises(StageError, match="not a Megatron checkpoint folder"):
        ModelShape.load(tmp_path)


def test_inconsistent_shape_is_rejected() -> None:
    with pytest.raises(StageError, match="not a multiple") as err:
        dataclasses.replace(SHAPE, num_key_value_heads=3, eos_token_id=9000)
    assert "eos_token_id 9000" in str(err.value)


def test_layout_flags_are_recorded_and_model_json_of_earlier_versions_still_loads(tmp_path: Path) -> None:
    llama = dataclasses.replace(SHAPE, architecture="llama", qk_norm=False, rope_scaling_factor=8.0)
    llama.save(tmp_path)
    data = json.loads((tmp_path / MODEL_JSON).read_text())
    assert (data["qkv_bias"], data["qk_norm"], data["rope_scaling_factor"]) == (False, False, 8.0)
    assert ModelShape.load(tmp_path) == llama
    earlier = {k: v for k, v in dataclasses.asdict(SHAPE).items()
               if k not in ("qkv_bias", "qk_norm", "rope_scaling_factor")}  # Qwen3-only model.json
    assert ModelShape.from_dict(earlier) == SHAPE


def test_layout_must_match_the_architecture() -> None:
    with pytest.raises(StageError) as err:
        dataclasses.replace(SHAPE, architecture="qwen2")
    assert "qkv_bias is False but qwen2 models have qkv_bias True" in str(err.value)
    assert "qk_norm is True but qwen2 models have qk_norm False" in str(err.value)
    with pytest.raises(StageError, match="'mistral' is not one of"):
        dataclasses.replace(SHAPE, architecture="mistral")
