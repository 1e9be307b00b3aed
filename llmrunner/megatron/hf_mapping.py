"""HF decoder models (Qwen3, Qwen2, Llama) ⇄ megatron-core (local spec): config ⇄ ModelShape, and
state dict ⇄ state dict.

The three families share one block (RMSNorm, SwiGLU MLP, grouped-query attention, RoPE); they
differ in q/k/v biases (Qwen2) and per-head q/k norms (Qwen3). One table, `_LAYER_TABLE` (+
`_GLOBAL_TABLE`), drives both directions for all of them; an entry present only in some layouts says
when. An entry joins one or more HF tensors into one Megatron tensor:

- "copy": same tensor under another name;
- "qkv":  q, k, v projections (weights or biases) fused into `linear_qkv`, grouped by KV group: for
          each group g the rows of its query heads, then k_g, then v_g (megatron's layout for GQA);
- "cat":  gate and up projections stacked into `linear_fc1` (SwiGLU: first half is the gate).

Every tensor's shape is checked against the ModelShape, and keys left over on either side are
an error, so a different architecture cannot be half-converted silently.
"""
from __future__ import annotations

from collections.abc import Callable

import torch

from llmrunner.errors import StageError
from llmrunner.megatron.model import LAYOUTS, ModelShape

# config.json `architectures` -> ModelShape.architecture (which is also HF's model_type).
HF_ARCHITECTURES = {"Qwen3ForCausalLM": "qwen3", "Qwen2ForCausalLM": "qwen2", "LlamaForCausalLM": "llama"}
# HF config values the mapping relies on per family; another value changes the network (o_proj or MLP
# biases, another activation, sliding-window attention) in a way the Megatron model does not reproduce.
_REQUIRED_VALUES = {
    "qwen3": {"attention_bias": False, "hidden_act": "silu", "use_sliding_window": False},
    "qwen2": {"hidden_act": "silu", "use_sliding_window": False},
    "llama": {"attention_bias": False, "mlp_bias": False, "hidden_act": "silu"},
}
# Expert counts of mixture-of-experts configs (Qwen-MoE, Mixtral, DeepSeek): the converter maps dense models.
_MOE_KEYS = ("num_experts", "num_local_experts", "n_routed_experts")
# Llama 3.1 / 3.2 RoPE scaling (rope_type "llama3") as megatron-core implements it: only `factor` varies.
_LLAMA3_ROPE = {"low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}

_Entry = tuple[tuple[str, ...], str, str, Callable[[ModelShape], bool]]


def _always(shape: ModelShape) -> bool:
    return True


# (HF names, Megatron name, how the HF tensors join, in which shapes the entry exists)
_GLOBAL_TABLE: list[_Entry] = [
    (("model.embed_tokens.weight",), "embedding.word_embeddings.weight", "copy", _always),
    (("model.norm.weight",), "decoder.final_layernorm.weight", "copy", _always),
    (("lm_head.weight",), "output_layer.weight", "copy", lambda s: not s.tie_embeddings),
]
_LAYER_TABLE: list[_Entry] = [
    (("self_attn.q_proj.weight", "self_attn.k_proj.weight", "self_attn.v_proj.weight"),
     "self_attention.linear_qkv.weight", "qkv", _always),
    (("self_attn.q_proj.bias", "self_attn.k_proj.bias", "self_attn.v_proj.bias"),
     "self_attention.linear_qkv.bias", "qkv", lambda s: s.qkv_bias),
    (("self_attn.o_proj.weight",), "self_attention.linear_proj.weight", "copy", _always),
    (("self_attn.q_norm.weight",), "self_attention.q_layernorm.weight", "copy", lambda s: s.qk_norm),
    (("self_attn.k_norm.weight",), "self_attention.k_layernorm.weight", "copy", lambda s: s.qk_norm),
    (("input_layernorm.weight",), "input_layernorm.weight", "copy", _always),
    (("post_attention_layernorm.weight",), "pre_mlp_layernorm.weight", "copy", _always),
    (("mlp.gate_proj.weight", "mlp.up_proj.weight"), "mlp.linear_fc1.weight", "cat", _always),
    (("mlp.down_proj.weight",), "mlp.linear_fc2.weight", "copy", _always),
]
# Buffers some exporters write, and state that is not a weight: skipped, never an error.
_IGNORED_SUFFIXES = ("rotary_emb.inv_freq", "._extra_state")


def _entries(shape: ModelShape) -> list[tuple[tuple[str, ...], str, str]]:
    """The table expanded to concrete names for this shape."""
    table = [(hf_names, mg_name, kind) for hf_names, mg_name, kind, present in _GLOBAL_TABLE if present(shape)]
    for i in range(shape.num_layers):
        for hf_names, mg_name, kind, present in _LAYER_TABLE:
            if present(shape):
                table.append((tuple(f"model.layers.{i}.{n}" for n in hf_names), f"decoder.layers.{i}.{mg_name}",
                              kind))
    return table


def _hf_shape(name: str, s: ModelShape) -> tuple[int, ...]:
    q_rows, kv_rows = s.num_attention_heads * s.head_dim, s.num_key_value_heads * s.head_dim
    shapes = {
        "embed_tokens.weight": (s.vocab_size, s.hidden_size), "lm_head.weight": (s.vocab_size, s.hidden_size),
        "q_proj.weight": (q_rows, s.hidden_size), "k_proj.weight": (kv_rows, s.hidden_size),
        "v_proj.weight": (kv_rows, s.hidden_size), "o_proj.weight": (s.hidden_size, q_rows),
        "q_proj.bias": (q_rows,), "k_proj.bias": (kv_rows,), "v_proj.bias": (kv_rows,),
        "q_norm.weight": (s.head_dim,), "k_norm.weight": (s.head_dim,),
        "gate_proj.weight": (s.ffn_hidden_size, s.hidden_size), "up_proj.weight": (s.ffn_hidden_size, s.hidden_size),
        "down_proj.weight": (s.hidden_size, s.ffn_hidden_size),
    }
    suffix = ".".join(name.split(".")[-2:])
    return shapes.get(suffix, (s.hidden_size,))  # the remaining tensors are the hidden-size norms


def _fuse(parts: list[torch.Tensor], kind: str, s: ModelShape) -> torch.Tensor:
    if kind == "copy":
        return parts[0]
    if kind == "cat":
        return torch.cat(parts, dim=0)
    q, k, v = parts
    groups, per_group = s.num_key_value_heads, s.num_attention_heads // s.num_key_value_heads
    rest = q.shape[1:]  # (hidden,) for weights, () for biases
    return torch.cat([q.reshape(groups, per_group * s.head_dim, *rest), k.reshape(groups, s.head_dim, *rest),
                      v.reshape(groups, s.head_dim, *rest)], dim=1).reshape(-1, *rest)


def _split(fused: torch.Tensor, kind: str, s: ModelShape) -> list[torch.Tensor]:
    if kind == "copy":
        return [fused]
    if kind == "cat":
        return [t.clone() for t in fused.chunk(2, dim=0)]
    groups, per_group = s.num_key_value_heads, s.num_attention_heads // s.num_key_value_heads
    rest = fused.shape[1:]
    grouped = fused.reshape(groups, (per_group + 2) * s.head_dim, *rest)
    q_end, k_end = per_group * s.head_dim, (per_group + 1) * s.head_dim
    return [grouped[:, :q_end].reshape(-1, *rest), grouped[:, q_end:k_end].reshape(-1, *rest),
            grouped[:, k_end:].reshape(-1, *rest)]


def _check_shape(problems: list[str], side: str, name: str, tensor: torch.Tensor, expected: tuple) -> None:
    if tuple(tensor.shape) != tuple(expected):
        problems.append(f"{side} {name} has shape {tuple(tensor.shape)}, the model shape implies {tuple(expected)}")


def _drop_ignored(state: dict) -> dict:
    return {k: v for k, v in state.items() if not k.endswith(_IGNORED_SUFFIXES)}


def hf_to_megatron(hf_state: dict[str, torch.Tensor], shape: ModelShape) -> dict[str, torch.Tensor]:
    """Map an HF state dict (Qwen3, Qwen2 or Llama, as the shape says) to megatron-core local-spec names."""
    hf_state = _drop_ignored(hf_state)
    if shape.tie_embeddings and "lm_head.weight" in hf_state:
        # Some exporters write the tied matrix twice; accept only an exact copy.
        if not torch.equal(hf_state["lm_head.weight"], hf_state.get("model.embed_tokens.weight")):
            raise StageError("the HF config ties embeddings but lm_head.weight differs from "
                             "model.embed_tokens.weight; set tie_word_embeddings false in config.json")
        hf_state = {k: v for k, v in hf_state.items() if k != "lm_head.weight"}
    out, problems, used = {}, [], set()
    for hf_names, mg_name, kind in _entries(shape):
        missing = [n for n in hf_names if n not in hf_state]
        used.update(n for n in hf_names if n in hf_state)  # the rest of a group is not also "left over"
        if missing:
            problems.append(f"HF weights lack {missing}")
            continue
        for n in hf_names:
            _check_shape(problems, "HF", n, hf_state[n], _hf_shape(n, shape))
        if not problems:
            out[mg_name] = _fuse([hf_state[n] for n in hf_names], kind, shape)
    leftover = sorted(set(hf_state) - used)
    if leftover:
        problems.append(f"HF weights not in the {shape.architecture} mapping: {leftover[:10]}"
                        + (f" and {len(leftover) - 10} more" if len(leftover) > 10 else ""))
    if problems:
        raise StageError("cannot map the HF checkpoint to Megatron: " + "; ".join(problems))
    return out


def megatron_to_hf(mg_state: dict[str, torch.Tensor], shape: ModelShape) -> dict[str, torch.Tensor]:
    """Map a megatron-core local-spec state dict back to HF names (inverse of hf_to_megatron)."""
    mg_state = _drop_ignored(mg_state)
    out, problems, used = {}, [], set()
    for hf_names, mg_name, kind in _entries(shape):
        if mg_name not in mg_state:
            problems.append(f"Megatron weights lack {mg_name}")
            continue
        used.add(mg_name)
        fused = mg_state[mg_name]
        expected_rows = sum(_hf_shape(n, shape)[0] for n in hf_names)
        expected = (expected_rows, *_hf_shape(hf_names[0], shape)[1:])
        _check_shape(problems, "Megatron", mg_name, fused, expected)
        if not problems:
            out.update(zip(hf_names, _split(fused, kind, shape)))
    leftover = sorted(set(mg_state) - used)
    if leftover:
        problems.append(f"Megatron weights not in the {shape.architecture} mapping: {leftover[:10]}")
    if problems:
        raise StageError("cannot map the Megatron checkpoint to HF: " + "; ".join(problems))
    return out


def _architecture(config: dict, problems: list[str]) -> str | None:
    """ModelShape.architecture of an HF config: from `architectures`, else (configs built in code) model_type;
    None, with the reason added to problems, for another model."""
    names = config.get("architectures")
    supported = ", ".join(HF_ARCHITECTURES)
    if names:
        if len(names) == 1 and names[0] in HF_ARCHITECTURES:
            return HF_ARCHITECTURES[names[0]]
        problems.append(f"architectures is {names}; the converter maps the weights of {supported} only")
    elif config.get("model_type") in LAYOUTS:
        return config["model_type"]
    else:
        problems.append(f"neither `architectures` ({names}) nor model_type ({config.get('model_type')!r}) names a "
                        f"supported model; the converter maps {supported} (model_type {', '.join(LAYOUTS)})")
    return None


def _read_rope(config: dict, problems: list[str]) -> tuple[float, float | None]:
    """(rope_theta, llama3 scaling factor or None); an unsupported RoPE variant is added to problems."""
    # transformers 5 writes `rope_parameters` (rope_theta inside); 4.x a top-level rope_theta and `rope_scaling`.
    key = "rope_parameters" if config.get("rope_parameters") else "rope_scaling"
    rope = config.get(key) or {}
    theta = float(rope.get("rope_theta", config.get("rope_theta", 10000.0)))
    rope_type = rope.get("rope_type", rope.get("type", "default"))
    if rope_type == "default":
        return theta, None
    if rope_type == "llama3" and all(rope.get(k) == v for k, v in _LLAMA3_ROPE.items()) \
            and rope.get("factor", 0) >= 1:
        return theta, float(rope["factor"])
    fixed = ", ".join(f"{k} {v:g}" for k, v in _LLAMA3_ROPE.items())
    problems.append(f"{key} is {rope}: supported are plain RoPE (rope_type 'default') and Llama 3.1/3.2 scaling "
                    f"(rope_type 'llama3', factor >= 1, {fixed}), what megatron-core implements")
    return theta, None


def shape_from_hf_config(config: dict, source: str = "config.json") -> ModelShape:
    """ModelShape of an HF Qwen3 / Qwen2 / Llama config.json; every unsupported setting is named in one error."""
    problems = [f"{key} is {config[key]}: a mixture-of-experts model; the converter maps dense models only"
                for key in _MOE_KEYS if config.get(key)]
    architecture = _architecture(config, problems)
    if architecture is None:
        raise StageError(f"{source}: " + "; ".join(problems))
    if config.get("model_type", architecture) != architecture:
        problems.append(f"model_type is {config.get('model_type')!r} but architectures names a {architecture} model")
    for key, wanted in _REQUIRED_VALUES[architecture].items():
        if config.get(key, wanted) != wanted:
            problems.append(f"{key} is {config.get(key)!r}; the converter supports {wanted!r} for {architecture}")
    rope_theta, rope_scaling_factor = _read_rope(config, problems)
    required = ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads")
    problems += [f"key {key!r} is missing" for key in required if key not in config]

    def first(value):  # generation configs may list several eos ids; the first is the document end
        return value[0] if isinstance(value, list) else value

    eos = first(config.get("eos_token_id"))
    if eos is None:
        problems.append("eos_token_id is missing (the end-of-document token of CPT data)")
    if problems:
        raise StageError(f"{source}: " + "; ".join(problems))
    pad = first(config.get("pad_token_id"))
    heads = config["num_attention_heads"]
    return ModelShape(
        vocab_size=config["vocab_size"], hidden_size=config["hidden_size"],
        num_layers=config["num_hidden_layers"], num_attention_heads=heads,
        num_key_value_heads=config.get("num_key_value_heads") or heads,
        head_dim=config.get("head_dim") or config["hidden_size"] // heads,
        ffn_hidden_size=config["intermediate_size"], rope_theta=rope_theta,
        norm_eps=config.get("rms_norm_eps", 1e-6), tie_embeddings=bool(config.get("tie_word_embeddings", False)),
        max_position_embeddings=config.get("max_position_embeddings", 32768),
        eos_token_id=eos, pad_token_id=eos if pad is None else pad,  # Qwen3-Base pads with eos
        bos_token_id=first(config.get("bos_token_id")), architecture=architecture,
        rope_scaling_factor=rope_scaling_factor, **LAYOUTS[architecture])


def hf_config_kwargs(shape: ModelShape) -> dict:
    """Keyword arguments for the shape's transformers config class (`AutoConfig.for_model(shape.architecture,
    **kwargs)`) that reproduce the shape."""
    rope = {"rope_type": "default", "rope_theta": shape.rope_theta}
    if shape.rope_scaling_factor is not None:
        rope = {"rope_type": "llama3", "rope_theta": shape.rope_theta, "factor": shape.rope_scaling_factor,
                **_LLAMA3_ROPE}
    hf_class = next(name for name, arch in HF_ARCHITECTURES.items() if arch == shape.architecture)
    return dict(
        vocab_size=shape.vocab_size, hidden_size=shape.hidden_size, intermediate_size=shape.ffn_hidden_size,
        num_hidden_layers=shape.num_layers, num_attention_heads=shape.num_attention_heads,
        num_key_value_heads=shape.num_key_value_heads, head_dim=shape.head_dim, rope_parameters=rope,
        rms_norm_eps=shape.norm_eps, tie_word_embeddings=shape.tie_embeddings,
        max_position_embeddings=shape.max_position_embeddings, eos_token_id=shape.eos_token_id,
        pad_token_id=shape.pad_token_id, bos_token_id=shape.bos_token_id, architectures=[hf_class],
        **_REQUIRED_VALUES[shape.architecture],
    )
