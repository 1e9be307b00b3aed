"""The model shape (`model.json` in every Megatron checkpoint folder) and the GPTModel builder.

The shape is everything needed to rebuild the network and its HF config: mg2hf and training read
it instead of guessing from tensor sizes. The builder makes a megatron-core GPTModel for the decoder
families in LAYOUTS: RMSNorm, SwiGLU, grouped-query attention and RoPE, which they share, plus what
sets them apart (q/k/v biases, per-head q/k RMSNorm). Layers come from the local (megatron-core)
spec with attention through torch's SDPA (attention.py), or, for training on GPUs, from the
Transformer Engine spec; both read and write the same checkpoints.
"""
from __future__ import annotations

import dataclasses
import functools
import json
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from llmrunner.errors import StageError

MODEL_JSON = "model.json"
# Layer implementations build_gpt_model takes (a settings' `auto` is resolved by resolve_transformer_impl).
LOCAL, TRANSFORMER_ENGINE = "local", "transformer_engine"
# State-dict entry of module state beyond tensors: Transformer Engine's FP8 metadata, None in local layers.
EXTRA_STATE = "_extra_state"
# What sets each supported family's layers apart; the HF model code fixes these, so a shape must match.
LAYOUTS = {
    "qwen3": {"qkv_bias": False, "qk_norm": True},
    "qwen2": {"qkv_bias": True, "qk_norm": False},
    "llama": {"qkv_bias": False, "qk_norm": False},
}
SUPPORTED_ARCHITECTURES = tuple(LAYOUTS)


@dataclass(frozen=True)
class ModelShape:
    """Architecture hyper-parameters of a decoder-only model of one of the LAYOUTS families."""

    vocab_size: int
    """Rows of the embedding and output matrices (the tokenizer may use fewer)."""
    hidden_size: int
    """Width of the residual stream."""
    num_layers: int
    """Transformer blocks."""
    num_attention_heads: int
    """Query heads per layer."""
    num_key_value_heads: int
    """Key/value heads per layer (grouped-query attention); divides num_attention_heads."""
    head_dim: int
    """Width of one attention head (Qwen3 sets it explicitly; need not be hidden / heads)."""
    ffn_hidden_size: int
    """Width of the SwiGLU MLP (the gate and up projections each have this many rows)."""
    rope_theta: float
    """RoPE base frequency."""
    norm_eps: float
    """RMSNorm epsilon."""
    tie_embeddings: bool
    """Output layer shares the input embedding (small Qwen3 models); else a separate lm_head."""
    max_position_embeddings: int
    """Longest context the model is configured for (copied to the HF config)."""
    eos_token_id: int
    """End-of-document / end-of-sequence token: the EOD token of the CPT data."""
    pad_token_id: int
    """Padding token (equals eos for Qwen3-Base)."""
    bos_token_id: int | None = None
    """Beginning-of-sequence token written to the HF config, if the source had one."""
    architecture: str = "qwen3"
    """Weight layout family, as HF's `model_type` (qwen3, qwen2, llama); mg2hf writes that HF model."""
    qkv_bias: bool = False
    """The q, k and v projections have biases (Qwen2); megatron's `add_qkv_bias`."""
    qk_norm: bool = True
    """Per-head RMSNorm on queries and keys before RoPE (Qwen3); megatron's `qk_layernorm`."""
    rope_scaling_factor: float | None = None
    """Llama-3.1-style RoPE scaling factor (HF rope_type `llama3` with low_freq_factor 1,
    high_freq_factor 4, original_max_position_embeddings 8192); None is plain RoPE."""

    def __post_init__(self) -> None:
        problems = []
        if self.architecture not in SUPPORTED_ARCHITECTURES:
            problems.append(f"architecture {self.architecture!r} is not one of {SUPPORTED_ARCHITECTURES}")
        else:
            problems += [f"{key} is {getattr(self, key)} but {self.architecture} models have {key} {wanted}"
                         for key, wanted in LAYOUTS[self.architecture].items() if getattr(self, key) != wanted]
        if self.rope_scaling_factor is not None and not self.rope_scaling_factor >= 1:
            problems.append(f"rope_scaling_factor {self.rope_scaling_factor} must be >= 1 (or null: no scaling)")
        if self.num_attention_heads % self.num_key_value_heads:
            problems.append(f"num_attention_heads {self.num_attention_heads} is not a multiple of "
                            f"num_key_value_heads {self.num_key_value_heads}")
        for name in ("eos_token_id", "pad_token_id"):
            if not 0 <= getattr(self, name) < self.vocab_size:
                problems.append(f"{name} {getattr(self, name)} is outside the vocabulary (0..{self.vocab_size - 1})")
        if problems:
            raise StageError("invalid model shape: " + "; ".join(problems))

    @classmethod
    def from_dict(cls, data: dict, source: str = "model shape") -> "ModelShape":
        """Build from a plain dict (model.json); names missing and unknown keys in one error."""
        names = {f.name for f in dataclasses.fields(cls)}
        required = {f.name for f in dataclasses.fields(cls)
                    if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING}
        missing = sorted(required - data.keys())
        unknown = sorted(data.keys() - names)
        if missing or unknown:
            raise StageError(f"{source}: missing keys {missing}, unknown keys {unknown}; "
                             "rewrite it with `python -m llmrunner.convert hf2mg`")
        return cls(**data)

    @classmethod
    def load(cls, folder: str | Path) -> "ModelShape":
        """Read `<folder>/model.json`."""
        path = Path(folder) / MODEL_JSON
        if not path.is_file():
            raise StageError(f"{path} is missing: {folder} is not a Megatron checkpoint folder written by "
                             "llmrunner (hf2mg or training write model.json beside iter_*/)")
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise StageError(f"{path} is not valid JSON ({err}); rerun the step that wrote it") from err
        return cls.from_dict(data, source=str(path))

    def save(self, folder: str | Path) -> Path:
        """Write `<folder>/model.json`."""
        path = Path(folder) / MODEL_JSON
        path.write_text(json.dumps(dataclasses.asdict(self), indent=2) + "\n")
        return path


def transformer_config(shape: ModelShape, dtype: torch.dtype = torch.float32, **options):
    """megatron-core TransformerConfig for the shape; parallel sizes come from parallel_state.

    `options` are further TransformerConfig fields that change memory or speed, not the model
    (recompute_granularity, recompute_method, recompute_num_layers, sequence_parallel).
    """
    from megatron.core import parallel_state
    from megatron.core.transformer.transformer_config import TransformerConfig

    on_gpu = torch.cuda.is_available()
    return TransformerConfig(
        num_layers=shape.num_layers,
        hidden_size=shape.hidden_size,
        ffn_hidden_size=shape.ffn_hidden_size,
        num_attention_heads=shape.num_attention_heads,
        num_query_groups=shape.num_key_value_heads,
        kv_channels=shape.head_dim,
        normalization="RMSNorm",
        layernorm_epsilon=shape.norm_eps,
        gated_linear_unit=True,
        activation_func=F.silu,
        qk_layernorm=shape.qk_norm,
        add_bias_linear=False,
        add_qkv_bias=shape.qkv_bias,
        hidden_dropout=0.0,
        attention_dropout=0.0,
        tensor_model_parallel_size=parallel_state.get_tensor_model_parallel_world_size(),
        pipeline_model_parallel_size=parallel_state.get_pipeline_model_parallel_world_size(),
        params_dtype=dtype,
        pipeline_dtype=dtype,
        bf16=dtype == torch.bfloat16,
        # Fusions need CUDA extensions (Apex / Transformer Engine); the local spec runs without them.
        use_cpu_initialization=not on_gpu,
        bias_dropout_fusion=False,
        masked_softmax_fusion=False,
        gradient_accumulation_fusion=False,
        apply_rope_fusion=False,
        persist_layer_norm=False,
        **options,
    )


def transformer_engine_problem() -> str | None:
    """Why the Transformer Engine layers cannot be used in this process, or None when they can."""
    if not torch.cuda.is_available():
        return "no CUDA GPU is available"
    try:
        import transformer_engine  # noqa: F401
        from megatron.core.extensions.transformer_engine import TENorm  # noqa: F401
    except (ImportError, OSError) as err:  # OSError: installed, but its CUDA libraries do not load
        return f"transformer_engine does not import ({err})"
    return None


def resolve_transformer_impl(requested: str) -> str:
    """The layer implementation for a `transformer_impl` setting: auto is transformer_engine when it can be
    used here, else local; transformer_engine that cannot be used is a StageError saying why."""
    if requested == LOCAL:
        return LOCAL
    problem = transformer_engine_problem()
    if requested == TRANSFORMER_ENGINE and problem:
        raise StageError(f"`transformer_impl: transformer_engine` cannot be used: {problem}. Install Transformer "
                         "Engine (pip install transformer_engine[pytorch]) in the training environment and run "
                         "on a GPU, or set `transformer_impl` to auto (uses it when available) or local")
    return LOCAL if problem else TRANSFORMER_ENGINE


def _block_spec(shape: ModelShape, transformer_impl: str):
    """The decoder's spec: its layers' and, for the local spec, its final norm."""
    from megatron.core import parallel_state
    from megatron.core.models.gpt.gpt_layer_specs import (
        get_gpt_layer_local_spec,
        get_gpt_layer_with_transformer_engine_spec,
    )
    from megatron.core.transformer.transformer_block import TransformerBlockSubmodules

    if transformer_impl == TRANSFORMER_ENGINE:
        # TE's norms read RMSNorm from the config; its fused norm + linear layers take over input_layernorm and
        # pre_mlp_layernorm under the names the local spec's checkpoints map them to. megatron picks TE's final norm.
        return get_gpt_layer_with_transformer_engine_spec(qk_layernorm=shape.qk_norm)
    from llmrunner.megatron.attention import SDPAttention
    from llmrunner.megatron.norm import RMSNorm

    layer = get_gpt_layer_local_spec(qk_layernorm=shape.qk_norm, normalization="RMSNorm")
    attention = layer.submodules.self_attention.submodules
    attention.core_attention = SDPAttention  # fused kernels, same numbers
    # torch's RMSNorm as the local spec has it, but able to run sequence-parallel (norm.py)
    layer.submodules.input_layernorm = layer.submodules.pre_mlp_layernorm = RMSNorm
    if shape.qk_norm:
        attention.q_layernorm = attention.k_layernorm = RMSNorm
    # Spelled out to choose the final norm too (else Apex's or TE's when installed): this stage's layers.
    stage_layers = shape.num_layers // parallel_state.get_pipeline_model_parallel_world_size()
    return TransformerBlockSubmodules(layer_specs=[layer] * stage_layers, layer_norm=RMSNorm)


@functools.cache
def _gpt_model_class():
    from megatron.core.models.gpt import GPTModel

    class InterchangeableGPTModel(GPTModel):
        """GPTModel whose checkpoints hold no `_extra_state` entries, so a checkpoint of either layer spec loads
        into the other: megatron-core's local linears keep None there, Transformer Engine's modules their FP8
        metadata (unused without FP8) and TE has more of them (core attention, norms). Checkpoints that hold
        them still load (entries a load does not ask for are ignored)."""

        def sharded_state_dict(self, *args, **kwargs):
            state = super().sharded_state_dict(*args, **kwargs)
            return {key: value for key, value in state.items() if not key.endswith(EXTRA_STATE)}

        def load_state_dict(self, state_dict, strict: bool = True):
            # None leaves a TE module's extra state as built; a strict load would call it missing.
            absent = {key: None for key in self.state_dict() if key.endswith(EXTRA_STATE) and key not in state_dict}
            return super().load_state_dict({**state_dict, **absent}, strict=strict)

    return InterchangeableGPTModel


def build_gpt_model(shape: ModelShape, dtype: torch.dtype = torch.float32, transformer_impl: str = LOCAL,
                    **options):
    """A GPTModel for this pipeline stage (pre/post process from parallel_state), on CPU or GPU.

    `transformer_impl` is LOCAL or TRANSFORMER_ENGINE (see resolve_transformer_impl); `options` are
    TransformerConfig fields as in transformer_config. Call parallel.init_distributed() first. Weights
    are randomly initialised; load a checkpoint.
    """
    from llmrunner.megatron import cpu_compat

    if not torch.cuda.is_available():
        cpu_compat.enable()
    from megatron.core import parallel_state

    model = _gpt_model_class()(
        config=transformer_config(shape, dtype, **options),
        transformer_layer_spec=_block_spec(shape, transformer_impl),
        vocab_size=shape.vocab_size,
        max_sequence_length=shape.max_position_embeddings,
        pre_process=parallel_state.is_pipeline_first_stage(),
        post_process=parallel_state.is_pipeline_last_stage(),
        share_embeddings_and_output_weights=shape.tie_embeddings,
        position_embedding_type="rope",
        rotary_base=shape.rope_theta,
        rotary_percent=1.0,
        # megatron-core implements Llama 3.1's scaling with that release's fixed low/high frequency factors.
        rope_scaling=shape.rope_scaling_factor is not None,
        rope_scaling_factor=shape.rope_scaling_factor or 1.0,
    )
    if torch.cuda.is_available():
        model.cuda(torch.cuda.current_device())
    return model
