"""tokenize: unified-schema JSON Lines -> Megatron indexed datasets (CPT ids; SFT ids + loss mask)."""
