"""hf2mg / mg2hf: HF Qwen3 folders ⇄ Megatron checkpoint folders, each checked by a logits parity test."""
