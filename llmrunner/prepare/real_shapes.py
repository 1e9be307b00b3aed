"""Real model shapes without their weights: HF model folders with a published config.json (Qwen3 0.6B-8B Base,
Qwen2.5-0.5B, Llama-3.2-1B), a stand-in tokenizer of the real size and special-token ids, and optionally random
weights of exactly that shape. They let conversion, training and planning run against real sizes offline.

    python -m llmrunner.prepare.real_shapes NAME OUT [--no-weights] [--dtype bfloat16|float32] [--layers N]

The stand-in tokenizer is the demo's byte-level BPE (tiny_model) grown to the real `len(tokenizer)`: the gap
up to the first special token is filled with vocabulary entries no merge produces (so tokenizing stays as fast
as the demo tokenizer's, and no text maps to them), then the family's added tokens at their real ids.
"""
from __future__ import annotations

import argparse
import functools
import json
import logging
import os
from pathlib import Path

from llmrunner.cli import run_main
from llmrunner.errors import StageError
from llmrunner.package_data import DEMO_DIR
from llmrunner.prepare.tiny_model import CHAT_TEMPLATE, DEMO_CORPUS, SEED, train_tokenizer

log = logging.getLogger(__name__)

CONFIG_DIR = Path(__file__).with_name("model_configs")
SHAPES: tuple[str, ...] = tuple(sorted(path.stem for path in CONFIG_DIR.glob("*.json")))
"""The shapes shipped: model_configs/<name>.json, each the model's config.json as published on the HF hub."""
DTYPES = ("bfloat16", "float32")

_QWEN25_ADDED = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
                 "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>",
                 "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>", "<tool_call>", "</tool_call>",
                 "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>", "<|fim_pad|>", "<|repo_name|>",
                 "<|file_sep|>"]
_LLAMA3_ADDED = ["<|begin_of_text|>", "<|end_of_text|>", "<|reserved_special_token_0|>",
                 "<|reserved_special_token_1|>", "<|finetune_right_pad_id|>", "<|reserved_special_token_2|>",
                 "<|start_header_id|>", "<|end_header_id|>", "<|eom_id|>", "<|eot_id|>", "<|python_tag|>",
                 *(f"<|reserved_special_token_{i}|>" for i in range(3, 248))]
_LLAMA3_CHAT_TEMPLATE = (
    "{{- bos_token }}"
    "{%- for message in messages %}"
    "{%- if message['role'] == 'assistant' %}"
    "{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}"
    "{% generation %}{{- message['content'] + '<|eot_id|>' }}{% endgeneration %}"
    "{%- else %}"
    "{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + message['content'] + '<|eot_id|>' }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{%- endif %}"
)
# Per model_type: the added tokens from the first special id on, how many of them are special (the rest, tool
# and FIM markers, are plain added tokens as in the real tokenizers), bos/eos/pad, and the chat template.
_TOKENIZERS = {
    "qwen3": dict(first_id=151643, added=[*_QWEN25_ADDED, "<tool_response>", "</tool_response>", "<think>",
                                          "</think>"], special=14, bos=None, eos="<|endoftext|>",
                  pad="<|endoftext|>", chat_template=CHAT_TEMPLATE),
    "qwen2": dict(first_id=151643, added=_QWEN25_ADDED, special=14, bos=None, eos="<|endoftext|>",
                  pad="<|endoftext|>", chat_template=CHAT_TEMPLATE),
    "llama": dict(first_id=128000, added=_LLAMA3_ADDED, special=len(_LLAMA3_ADDED), bos="<|begin_of_text|>",
                  eos="<|end_of_text|>", pad=None, chat_template=_LLAMA3_CHAT_TEMPLATE),
}
_FILLER = "<|stand-in {}|>"  # a vocabulary entry no BPE merge produces


def real_config(name: str) -> dict:
    """The published config.json of shape `name` (one of SHAPES)."""
    if name not in SHAPES:
        raise StageError(f"unknown model shape {name!r}; known: {', '.join(SHAPES)}")
    return json.loads((CONFIG_DIR / f"{name}.json").read_text(encoding="utf-8"))


def _demo_corpus() -> list[Path]:
    """The demo tokenizer's corpus: relative to the working directory (a project folder), else the demo project
    the package ships (package_data.DEMO_DIR, also inside an installed wheel)."""
    corpus = [path if path.is_file() else DEMO_DIR / path for path in DEMO_CORPUS]
    missing = [str(path) for path in corpus if not path.is_file()]
    if missing:
        raise StageError(f"the stand-in tokenizer is trained on the demo text, but {', '.join(missing)} is missing; "
                         f"reinstall llmrunner (its demo project {DEMO_DIR} is incomplete)")
    return corpus


@functools.cache
def _demo_bpe() -> str:
    """The demo BPE's tokenizer.json text (trained once per process: a pure function of the demo text)."""
    return train_tokenizer(_demo_corpus()).backend_tokenizer.to_str()


def stand_in_tokenizer(config: dict):
    """The demo BPE grown to the real tokenizer's size and special-token ids of the config's model family."""
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    family = _TOKENIZERS.get(config.get("model_type"))
    if family is None:
        raise StageError(f"no stand-in tokenizer for model_type {config.get('model_type')!r}; "
                         f"known: {', '.join(_TOKENIZERS)}")
    demo = json.loads(_demo_bpe())
    vocab = demo["model"]["vocab"]
    for added in demo["added_tokens"]:  # the demo's specials (ids 0-2) become fillers: the real ids come later
        vocab[_FILLER.format(added["id"])] = vocab.pop(added["content"])
    vocab.update({_FILLER.format(i): i for i in range(len(vocab), family["first_id"])})
    demo["added_tokens"] = [dict(id=family["first_id"] + i, content=token, single_word=False, lstrip=False,
                                 rstrip=False, normalized=False, special=i < family["special"])
                            for i, token in enumerate(family["added"])]
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=Tokenizer.from_str(json.dumps(demo)),
                                        bos_token=family["bos"], eos_token=family["eos"], pad_token=family["pad"],
                                        model_max_length=config["max_position_embeddings"],
                                        clean_up_tokenization_spaces=False)
    tokenizer.chat_template = family["chat_template"]
    return tokenizer


def random_weights(config: dict, dtype: str):
    """A model of the config's exact shape with random weights (seeded), to save: matrices and biases N(0,
    initializer_range), norms N(1, 0.1) so that a mapping that mixes norms up shows in parity. Its buffers that
    are not saved (RoPE frequencies) are left uninitialized: reload the saved folder to run it."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    hf_config = AutoConfig.for_model(**config)
    # Built on the meta device and filled here: transformers' own init takes ~1.5x as long.
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(hf_config, dtype=getattr(torch, dtype))
    model.to_empty(device="cpu")
    model.tie_weights()  # to_empty gives every module its own tensor
    generator = torch.Generator().manual_seed(SEED)
    std = config.get("initializer_range", 0.02)
    with torch.no_grad():
        for name, param in model.named_parameters():
            param.normal_(1.0 if "norm" in name else 0.0, 0.1 if "norm" in name else std, generator=generator)
    return model


def write_shape_folder(name: str, out: Path, *, weights: bool, dtype: str = "bfloat16",
                       num_layers: int | None = None) -> Path:
    """Write an HF model folder of shape `name` to `out`: its real config.json (num_hidden_layers replaced by
    `num_layers` when given), the stand-in tokenizer and, with `weights`, random safetensors weights in `dtype`."""
    if dtype not in DTYPES:
        raise StageError(f"dtype {dtype!r} is not one of {', '.join(DTYPES)}")
    if num_layers is not None and num_layers < 1:
        raise StageError(f"num_layers {num_layers} must be at least 1")
    config = real_config(name)
    if num_layers is not None:
        config["num_hidden_layers"] = num_layers
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = stand_in_tokenizer(config)
    tokenizer.save_pretrained(out)
    if weights:
        model = random_weights(config, dtype)
        model.generation_config.pad_token_id = tokenizer.pad_token_id
        model.save_pretrained(out)
    # Last: save_pretrained writes the transformers-5 form of the config; the folder holds the published one.
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    log.info("wrote %s shape to %s: %d layers, tokenizer of %d entries, %s", name, out, config["num_hidden_layers"],
             len(tokenizer), f"random {dtype} weights" if weights else "no weights")
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m llmrunner.prepare.real_shapes", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("name", choices=SHAPES, help="the model shape")
    parser.add_argument("out", type=Path, help="output folder (an HF model folder)")
    parser.add_argument("--no-weights", dest="weights", action="store_false",
                        help="config and tokenizer only (enough to plan a run)")
    parser.add_argument("--dtype", choices=DTYPES, default="bfloat16", help="dtype of the random weights")
    parser.add_argument("--layers", type=int, metavar="N", help="override num_hidden_layers (a shallower model)")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    write_shape_folder(args.name, args.out, weights=args.weights, dtype=args.dtype, num_layers=args.layers)


if __name__ == "__main__":
    run_main(main)
