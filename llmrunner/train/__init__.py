"""train_cpt / train_sft: megatron-core training from a Megatron checkpoint, resumable."""
