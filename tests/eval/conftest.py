"""A tiny random Qwen3 with its own byte-level BPE tokenizer and the demo's ChatML template, built offline in
a second or two."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from llmrunner.prepare.tiny_model import CHAT_TEMPLATE

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "resources" / "demo"
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


def build_tiny_model(out: Path, texts: list[str], *, vocab_size: int, hidden: int, layers: int) -> Path:
    """Train a byte-level BPE on `texts`, wrap it Qwen3-Base style (eos = pad = <|endoftext|>, ChatML), save it
    with a random-init Qwen3ForCausalLM (tied embeddings, head_dim 32) into `out`."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast, Qwen3Config, Qwen3ForCausalLM

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIALS, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    bpe.train_from_iterator(texts, trainer=trainer)
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|endoftext|>", pad_token="<|endoftext|>",
                                  additional_special_tokens=SPECIALS[1:], model_max_length=4096)
    tok.chat_template = CHAT_TEMPLATE
    heads = max(2, hidden // 32)
    config = Qwen3Config(vocab_size=len(tok), hidden_size=hidden, intermediate_size=3 * hidden,
                         num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=heads // 2,
                         head_dim=32, max_position_embeddings=2048, tie_word_embeddings=True,
                         eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, bos_token_id=None)
    torch.manual_seed(0)
    Qwen3ForCausalLM(config).save_pretrained(out)
    tok.save_pretrained(out)
    return out


def demo_texts() -> list[str]:
    """The demo's held-out documents, one file per source (resources/demo/heldout/), in name order."""
    texts = []
    for path in sorted((DEMO / "heldout").glob("*.jsonl")):
        with path.open(encoding="utf-8") as f:
            texts += [json.loads(line)["text"] for line in f]
    return texts


@pytest.fixture(scope="session")
def demo() -> Path:
    return DEMO


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny_qwen3"), demo_texts()[:10],
                            vocab_size=512, hidden=64, layers=2)
