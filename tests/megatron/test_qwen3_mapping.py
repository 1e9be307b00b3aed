"""The Qwen3 HF <-> Megatron weight mapping: exact round trip, shape checks, leftover keys."""
from __future__ import annotations

import pytest
import torch

from llmrunner.errors import StageError
from llmrunner.megatron.qwen3_mapping import hf_config_kwargs, hf_to_megatron, megatron_to_hf, shape_from_hf_config


def hf_model(tied: bool, kv_heads: int = 2):
    from transformers import Qwen3Config, Qwen3ForCausalLM

    config = Qwen3Config(vocab_size=96, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=kv_heads, head_dim=16, rope_theta=1e6,
                         tie_word_embeddings=tied, eos_token_id=0, pad_token_id=0)
    torch.manual_seed(0)
    return config, Qwen3ForCausalLM(config)


def hf_weights(model, tied: bool) -> dict[str, torch.Tensor]:
    # HF lists the tied lm_head under its own name; its files (save_pretrained) do not.
    return {k: v for k, v in model.state_dict().items() if not (tied and k == "lm_head.weight")}


@pytest.mark.parametrize("tied", [True, False])
@pytest.mark.parametrize("kv_heads", [1, 2, 4])
def test_round_trip_is_bit_identical(tied: bool, kv_heads: int) -> None:
    config, model = hf_model(tied, kv_heads)
    shape = shape_from_hf_config(config.to_dict())
    hf = hf_weights(model, tied)
    mg = hf_to_megatron(hf, shape)
    assert ("output_layer.weight" in mg) is not tied
    qkv = mg["decoder.layers.0.self_attention.linear_qkv.weight"]
    assert qkv.shape == ((4 + 2 * kv_heads) * 16, 64)
    back = megatron_to_hf(mg, shape)
    assert set(back) == set(hf)
    assert all(torch.equal(back[k], hf[k]) for k in hf)


def test_qkv_is_grouped_by_kv_group() -> None:
    config, model = hf_model(tied=True)
    shape = shape_from_hf_config(config.to_dict())
    hf = hf_weights(model, True)
    qkv = hf_to_megatron(hf, shape)["decoder.layers.1.self_attention.linear_qkv.weight"]
    q, k, v = (hf[f"model.layers.1.self_attn.{n}_proj.weight"] for n in "qkv")
    # Group 1 (of 2): query heads 2-3, then k head 1, then v head 1; 16 rows per head.
    group1 = qkv[64:128]
    assert torch.equal(group1[:32], q[32:64])
    assert torch.equal(group1[32:48], k[16:32])
    assert torch.equal(group1[48:64], v[16:32])


def test_fc1_is_gate_then_up() -> None:
    config, model = hf_model(tied=True)
    shape = shape_from_hf_config(config.to_dict())
    hf = hf_weights(model, True)
    fc1 = hf_to_megatron(hf, shape)["decoder.layers.0.mlp.linear_fc1.weight"]
    gate, up = hf["model.layers.0.mlp.gate_proj.weight"], hf["model.layers.0.mlp.up_proj.weight"]
    assert torch.equal(fc1, torch.cat([gate, up]))


def test_leftover_missing_and_misshaped_keys_fail_in_one_error() -> None:
    config, model = hf_model(tied=False)
    shape = shape_from_hf_config(config.to_dict())
    hf = hf_weights(model, False)
    hf["model.layers.0.self_attn.extra.weight"] = torch.zeros(1)
    del hf["model.layers.1.mlp.down_proj.weight"]
    hf["model.norm.weight"] = torch.zeros(65)
    with pytest.raises(StageError) as err:
        hf_to_megatron(hf, shape)
    message = str(err.value)
    assert "model.layers.0.self_attn.extra.weight" in message
    assert "model.layers.1.mlp.down_proj.weight" in message
    assert "model.norm.weight has shape (65,)" in message


def test_megatron_side_is_checked_too() -> None:
    config, model = hf_model(tied=True)
    shape = shape_from_hf_config(config.to_dict())
    mg = hf_to_megatron(hf_weights(model, True), shape)
    mg["output_layer.weight"] = torch.zeros(96, 64)  # a tied model has no separate output layer
    mg["decoder.layers.0.mlp.linear_fc1.weight"] = torch.zeros(10, 64)
    mg["decoder.layers.0.mlp.linear_fc1._extra_state"] = None  # megatron bookkeeping: ignored
    with pytest.raises(StageError) as err:
        megatron_to_hf(mg, shape)
    assert "linear_fc1.weight has shape (10, 64)" in str(err.value)
    assert "not in the Qwen3 mapping: ['output_layer.weight']" in str(err.value)


def test_tied_lm_head_copy_is_accepted_but_a_different_one_is_not() -> None:
    config, model = hf_model(tied=True)
    shape = shape_from_hf_config(config.to_dict())
    hf = hf_weights(model, True)
    hf_to_megatron({**hf, "lm_head.weight": hf["model.embed_tokens.weight"].clone()}, shape)
    with pytest.raises(StageError, match="tie_word_embeddings"):
        hf_to_megatron({**hf, "lm_head.weight": torch.zeros(96, 64)}, shape)


@pytest.mark.parametrize("tied", [True, False])
def test_hf_config_round_trip(tied: bool) -> None:
    from transformers import Qwen3Config

    config, _ = hf_model(tied)
    shape = shape_from_hf_config(config.to_dict())
    assert shape.tie_embeddings is tied and shape.rope_theta == 1e6 and shape.head_dim == 16
    assert shape_from_hf_config(Qwen3Config(**hf_config_kwargs(shape)).to_dict()) == shape


def test_transformers_4_style_config_is_read() -> None:
    config, _ = hf_model(True)
    legacy = {k: v for k, v in config.to_dict().items() if k != "rope_parameters"}
    legacy.update(rope_theta=500000.0, rope_scaling=None, eos_token_id=[0, 2])
    shape = shape_from_hf_config(legacy)
    assert shape.rope_theta == 500000.0 and shape.eos_token_id == 0


def test_unsupported_configs_are_named() -> None:
    config, _ = hf_model(True)
    bad = {**config.to_dict(), "model_type": "llama", "attention_bias": True, "eos_token_id": None}
    with pytest.raises(StageError) as err:
        shape_from_hf_config(bad, source="x/config.json")
    message = str(err.value)
    assert message.startswith("x/config.json")
    assert "model_type" in message and "attention_bias" in message and "eos_token_id" in message
