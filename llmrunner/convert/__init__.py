"""hf2mg / mg2hf: HF Qwen3/Qwen2/Llama folders ⇄ Megatron checkpoint folders, each checked by a logits parity test."""
