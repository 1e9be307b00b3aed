"""The demo base model, `builtin:tiny-qwen3`: a byte-level BPE tokenizer trained on the demo text
and a random-init Qwen3 with the same shape conventions as Qwen3-Base, small enough for a CPU.

Built deterministically: the same corpus gives the same bytes in every file (BPE training on one
input is deterministic, the weights come from a fixed seed, and every file is written in a fixed
order), so Snakemake and the tests can treat the folder as a pure function of the corpus.
"""
from __future__ import annotations

import gzip
import json
import logging
from collections.abc import Iterator, Sequence
from contextlib import ExitStack
from pathlib import Path

log = logging.getLogger(__name__)

DEMO_CORPUS = tuple(Path("resources/demo/cpt") / f"{source}.jsonl.gz"
                    for source in ("python-docs", "jargon-text", "wordnet"))
"""The text the demo tokenizer is trained on: the demo's CPT sources, one file each, relative to the repository
root (the workflow's working directory, so the prepare rule's inputs have no absolute path and a moved checkout
reruns nothing)."""

VOCAB_SIZE = 8192
CORPUS_BYTES = 5_000_000  # enough text for a stable 8k vocabulary; training then takes ~1.5 s
SEED = 1234
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]  # ids 0, 1, 2 (Qwen's names)
EOS_TOKEN = "<|endoftext|>"  # eos = pad = end of document, as in Qwen3-Base

# ChatML as Qwen uses it. The {% generation %} block (assistant content and its <|im_end|>) lets
# apply_chat_template(..., return_assistant_tokens_mask=True) mark the training targets.
CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{%- if message['role'] == 'assistant' %}"
    "{{- '<|im_start|>assistant\\n' }}"
    "{% generation %}{{- message['content'] + '<|im_end|>' }}{% endgeneration %}"
    "{{- '\\n' }}"
    "{%- else %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)

MODEL_SHAPE = {
    "hidden_size": 128,
    "intermediate_size": 384,
    "num_hidden_layers": 4,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 32,
    "max_position_embeddings": 2048,
    "rope_theta": 1_000_000.0,
    "rms_norm_eps": 1e-6,
    "tie_word_embeddings": True,
}


def corpus_lines(corpus: Sequence[Path]) -> Iterator[str]:
    """The JSON lines of the corpus's gzip'd files, one from each file in turn (files in the given order, each in
    file order; a file that runs out drops out): every source early on, and the same files give the same lines."""
    with ExitStack() as stack:
        files = [stack.enter_context(gzip.open(path, "rt", encoding="utf-8")) for path in corpus]
        while files:
            for f in list(files):
                line = f.readline()
                if line:
                    yield line
                else:
                    files.remove(f)


def corpus_texts(corpus: Sequence[Path], max_bytes: int) -> Iterator[str]:
    """The texts of `corpus_lines`, stopping once `max_bytes` of UTF-8 text were given: every source gets into
    the vocabulary, whatever the budget."""
    seen = 0
    for line in corpus_lines(corpus):
        text = json.loads(line).get("text") if line.strip() else None
        if isinstance(text, str) and text:
            yield text
            seen += len(text.encode("utf-8"))
            if seen >= max_bytes:
                return


def train_tokenizer(corpus: Sequence[Path], max_bytes: int = CORPUS_BYTES, vocab_size: int = VOCAB_SIZE):
    """Train a byte-level BPE (GPT-2 / Qwen style pre-tokenizer) and wrap it for transformers."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=2, special_tokens=SPECIAL_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(corpus_texts(corpus, max_bytes), trainer=trainer)
    hf = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=EOS_TOKEN, pad_token=EOS_TOKEN,
                                 additional_special_tokens=SPECIAL_TOKENS[1:],
                                 model_max_length=MODEL_SHAPE["max_position_embeddings"],
                                 clean_up_tokenization_spaces=False)
    hf.chat_template = CHAT_TEMPLATE
    ids = hf.convert_tokens_to_ids(SPECIAL_TOKENS)
    assert ids == [0, 1, 2], f"special tokens got ids {ids}"
    return hf


def build_tiny_qwen3(out: Path, corpus: Sequence[Path] = DEMO_CORPUS, max_bytes: int = CORPUS_BYTES) -> None:
    """Write the demo base model (tokenizer + random-init Qwen3ForCausalLM, float32 safetensors) to `out`."""
    import torch
    from transformers import Qwen3Config, Qwen3ForCausalLM

    tokenizer = train_tokenizer(corpus, max_bytes)
    config = Qwen3Config(vocab_size=len(tokenizer), bos_token_id=None, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id, dtype="float32", **MODEL_SHAPE)
    # fork_rng: the fixed seed must not leak into the caller's random state.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        model = Qwen3ForCausalLM(config)
        # HF zeroes the pad token's embedding row; pad = eos = end of document here, a token CPT
        # trains on, so give it a normal init (a zero row gives a huge first gradient in Megatron).
        with torch.no_grad():
            model.get_input_embeddings().weight[config.pad_token_id].normal_(0.0, config.initializer_range)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    params = sum(p.numel() for p in model.parameters())
    log.info("built tiny-qwen3 in %s: vocab %d, %.2f M parameters, tokenizer from %s (first %d bytes)",
             out, len(tokenizer), params / 1e6, ", ".join(map(str, corpus)), max_bytes)
