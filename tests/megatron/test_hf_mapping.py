"""The HF <-> Megatron mapping of every supported layout: exact round trip, fused layouts, shape checks,
leftover keys, and which HF configs are accepted."""
from __future__ import annotations

import pytest
import torch

from llmrunner.errors import StageError
from llmrunner.megatron.hf_mapping import hf_config_kwargs, hf_to_megatron, megatron_to_hf, shape_from_hf_config
from tests.megatron.fixtures import LLAMA3_ROPE, hf_config, random_hf_model

# (architecture, rope) of every supported layout; tied and untied embeddings are crossed with them.
LAYOUTS = {"qwen3": ("qwen3", None), "qwen2": ("qwen2", None), "llama3": ("llama", LLAMA3_ROPE)}


def hf_model(layout: str = "qwen3", tied: bool = True, kv_heads: int = 2):
    architecture, rope = LAYOUTS[layout]
    config = hf_config(architecture, tied=tied, kv_heads=kv_heads, vocab=96, ffn=96, rope=rope)
    return config, random_hf_model(config)


def hf_weights(model, tied: bool) -> dict[str, torch.Tensor]:
    # HF lists the tied lm_head under its own name; its files (save_pretrained) do not.
    return {k: v for k, v in model.state_dict().items() if not (tied and k == "lm_head.weight")}


def mapped(layout: str = "qwen3", tied: bool = True, kv_heads: int = 2):
    """(shape, HF weights, Megatron weights) of a random model of the layout."""
    config, model = hf_model(layout, tied, kv_heads)
    shape = shape_from_hf_config(config.to_dict())
    hf = hf_weights(model, tied)
    return shape, hf, hf_to_megatron(hf, shape)


@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("tied", [True, False])
@pytest.mark.parametrize("kv_heads", [1, 2, 4])
def test_round_trip_is_bit_identical(layout: str, tied: bool, kv_heads: int) -> None:
    shape, hf, mg = mapped(layout, tied, kv_heads)
    assert ("output_layer.weight" in mg) is not tied
    qkv = mg["decoder.layers.0.self_attention.linear_qkv.weight"]
    assert qkv.shape == ((4 + 2 * kv_heads) * 16, 64)
    back = megatron_to_hf(mg, shape)
    assert set(back) == set(hf)
    assert all(torch.equal(back[k], hf[k]) for k in hf)


@pytest.mark.parametrize("layout, bias, norms", [("qwen3", False, True), ("qwen2", True, False),
                                                 ("llama3", False, False)])
def test_each_layout_has_its_own_tensors(layout: str, bias: bool, norms: bool) -> None:
    shape, _, mg = mapped(layout)
    assert (shape.qkv_bias, shape.qk_norm) == (bias, norms)
    layer = {k.removeprefix("decoder.layers.1.") for k in mg if k.startswith("decoder.layers.1.")}
    assert ("self_attention.linear_qkv.bias" in layer) is bias
    assert ({"self_attention.q_layernorm.weight", "self_attention.k_layernorm.weight"} <= layer) is norms
    assert len(layer) == 6 + bias + 2 * norms  # qkv, proj, fc1, fc2, two norms, + bias, + q/k norms


@pytest.mark.parametrize("kind", ["weight", "bias"])
def test_qkv_is_grouped_by_kv_group(kind: str) -> None:
    _, hf, mg = mapped("qwen2")
    qkv = mg[f"decoder.layers.1.self_attention.linear_qkv.{kind}"]
    q, k, v = (hf[f"model.layers.1.self_attn.{n}_proj.{kind}"] for n in "qkv")
    # Group 1 (of 2): query heads 2-3, then k head 1, then v head 1; 16 rows per head.
    group1 = qkv[64:128]
    assert torch.equal(group1[:32], q[32:64])
    assert torch.equal(group1[32:48], k[16:32])
    assert torch.equal(group1[48:64], v[16:32])


def test_fc1_is_gate_then_up() -> None:
    _, hf, mg = mapped("llama3")
    gate, up = hf["model.layers.0.mlp.gate_proj.weight"], hf["model.layers.0.mlp.up_proj.weight"]
    assert torch.equal(mg["decoder.layers.0.mlp.linear_fc1.weight"], torch.cat([gate, up]))


def test_leftover_missing_and_misshaped_keys_fail_in_one_error() -> None:
    config, model = hf_model("qwen2", tied=False)
    shape = shape_from_hf_config(config.to_dict())
    hf = hf_weights(model, False)
    hf["model.layers.0.self_attn.q_norm.weight"] = torch.zeros(16)  # a Qwen3 tensor in a Qwen2 checkpoint
    del hf["model.layers.1.self_attn.k_proj.bias"]
    hf["model.norm.weight"] = torch.zeros(65)
    with pytest.raises(StageError) as err:
        hf_to_megatron(hf, shape)
    message = str(err.value)
    assert "not in the qwen2 mapping: ['model.layers.0.self_attn.q_norm.weight']" in message
    assert "model.layers.1.self_attn.k_proj.bias" in message
    assert "model.norm.weight has shape (65,)" in message


def test_megatron_side_is_checked_too() -> None:
    shape, _, mg = mapped("qwen3", tied=True)
    mg["output_layer.weight"] = torch.zeros(96, 64)  # a tied model has no separate output layer
    mg["decoder.layers.0.mlp.linear_fc1.weight"] = torch.zeros(10, 64)
    mg["decoder.layers.0.mlp.linear_fc1._extra_state"] = None  # megatron bookkeeping: ignored
    with pytest.raises(StageError) as err:
        megatron_to_hf(mg, shape)
    assert "linear_fc1.weight has shape (10, 64)" in str(err.value)
    assert "not in the qwen3 mapping: ['output_layer.weight']" in str(err.value)


def test_tied_lm_head_copy_is_accepted_but_a_different_one_is_not() -> None:
    shape, hf, _ = mapped("qwen3", tied=True)
    hf_to_megatron({**hf, "lm_head.weight": hf["model.embed_tokens.weight"].clone()}, shape)
    with pytest.raises(StageError, match="tie_word_embeddings"):
        hf_to_megatron({**hf, "lm_head.weight": torch.zeros(96, 64)}, shape)


@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("tied", [True, False])
def test_hf_config_round_trip(layout: str, tied: bool) -> None:
    from transformers import AutoConfig

    config, _ = hf_model(layout, tied)
    shape = shape_from_hf_config(config.to_dict())
    assert shape.tie_embeddings is tied and shape.head_dim == 16
    assert shape.architecture == LAYOUTS[layout][0]
    written = AutoConfig.for_model(shape.architecture, **hf_config_kwargs(shape))
    assert type(written) is type(config)
    assert shape_from_hf_config(written.to_dict()) == shape


def test_rope_settings_are_read() -> None:
    qwen, _ = hf_model("qwen3")
    llama, _ = hf_model("llama3")
    assert (shape_from_hf_config(qwen.to_dict()).rope_theta, shape_from_hf_config(qwen.to_dict()).rope_scaling_factor) \
        == (1e6, None)
    shape = shape_from_hf_config(llama.to_dict())
    assert (shape.rope_theta, shape.rope_scaling_factor) == (500000.0, 8.0)


def test_transformers_4_style_configs_are_read() -> None:
    config, _ = hf_model("qwen3")
    legacy = {k: v for k, v in config.to_dict().items() if k != "rope_parameters"}
    legacy.update(rope_theta=500000.0, rope_scaling=None, eos_token_id=[0, 2], architectures=["Qwen3ForCausalLM"])
    shape = shape_from_hf_config(legacy)
    assert shape.rope_theta == 500000.0 and shape.eos_token_id == 0
    # Llama 3.1's config.json as transformers 4.43 wrote it
    config, _ = hf_model("llama3")
    legacy = {k: v for k, v in config.to_dict().items() if k != "rope_parameters"}
    scaling = {k: v for k, v in LLAMA3_ROPE.items() if k != "rope_theta"}
    legacy.update(rope_theta=500000.0, rope_scaling=scaling, architectures=["LlamaForCausalLM"])
    assert shape_from_hf_config(legacy) == shape_from_hf_config(config.to_dict())


@pytest.mark.parametrize("architectures, model_type", [(["MistralForCausalLM"], "mistral"), (None, "gemma")])
def test_unsupported_architecture_names_the_supported_ones(architectures, model_type) -> None:
    config, _ = hf_model("llama3")
    bad = {**config.to_dict(), "architectures": architectures, "model_type": model_type}
    with pytest.raises(StageError) as err:
        shape_from_hf_config(bad, source="x/config.json")
    message = str(err.value)
    assert message.startswith("x/config.json") and str(architectures) in message
    assert "Qwen3ForCausalLM, Qwen2ForCausalLM, LlamaForCausalLM" in message


def test_unsupported_settings_are_named_in_one_error() -> None:
    config, _ = hf_model("llama3")
    bad = {**config.to_dict(), "attention_bias": True, "mlp_bias": True, "eos_token_id": None,
           "rope_parameters": {**LLAMA3_ROPE, "high_freq_factor": 2.0}}
    with pytest.raises(StageError) as err:
        shape_from_hf_config(bad, source="x/config.json")
    message = str(err.value)
    assert message.startswith("x/config.json")
    for key in ("attention_bias", "mlp_bias", "eos_token_id", "rope_parameters", "high_freq_factor 4"):
        assert key in message, key


@pytest.mark.parametrize("key, rope", [("rope_parameters", {"rope_type": "yarn", "rope_theta": 1e6, "factor": 4.0}),
                                       ("rope_scaling", {"type": "linear", "factor": 2.0})])
def test_other_rope_scalings_are_rejected(key: str, rope: dict) -> None:
    config, _ = hf_model("qwen2")
    bad = {k: v for k, v in config.to_dict().items() if k != "rope_parameters"}
    bad[key] = rope
    with pytest.raises(StageError, match=f"{key} is .*'llama3'"):
        shape_from_hf_config(bad)


def test_model_type_must_match_architectures() -> None:
    config, _ = hf_model("qwen2")
    with pytest.raises(StageError, match="model_type is 'qwen3' but architectures names a qwen2 model"):
        shape_from_hf_config({**config.to_dict(), "architectures": ["Qwen2ForCausalLM"], "model_type": "qwen3"})


@pytest.mark.parametrize("factor", [8.0, 32.0])  # Llama 3.1, Llama 3.2
def test_megatron_rope_scaling_is_hfs_llama3(factor: float) -> None:
    # The mapping accepts rope_type llama3 only with the factors megatron-core hard-codes; this is that claim.
    from megatron.core.models.common.embeddings.rotary_pos_embedding import RotaryEmbedding
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

    config = hf_config("llama", tied=True, head_dim=128, rope={**LLAMA3_ROPE, "factor": factor})
    shape = shape_from_hf_config(config.to_dict())
    hf_inv_freq, _ = ROPE_INIT_FUNCTIONS["llama3"](config, "cpu")
    megatron = RotaryEmbedding(kv_channels=shape.head_dim, rotary_percent=1.0, rotary_base=shape.rope_theta,
                               rope_scaling=True, rope_scaling_factor=shape.rope_scaling_factor,
                               use_cpu_initialization=True)
    plain = RotaryEmbedding(kv_channels=shape.head_dim, rotary_percent=1.0, rotary_base=shape.rope_theta,
                            use_cpu_initialization=True)
    assert not torch.allclose(plain.inv_freq, hf_inv_freq)  # the scaling changes the frequencies
    torch.testing.assert_close(megatron.inv_freq, hf_inv_freq.float(), rtol=1e-6, atol=0)
