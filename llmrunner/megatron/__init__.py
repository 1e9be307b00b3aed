"""megatron-core glue shared by convert and train: CPU compatibility, model building, parallel
state, checkpoint I/O and the HF (Qwen3/Qwen2/Llama) ⇄ Megatron weight mapping. Imports no stage."""
import logging
import warnings

# Expected without Transformer Engine / Apex (always so on CPU): megatron falls back to its local
# and torch implementations, which is what the local layer spec uses anyway.
warnings.filterwarnings("ignore", message=r".*(Transformer Engine and Apex|Apex) (are|is) not installed")
warnings.filterwarnings("ignore", message=r"full scope is deprecated")
# torch's checkpoint API deprecations, raised inside megatron's dist_checkpointing.
warnings.filterwarnings("ignore", message=r"`load_state_dict` is deprecated", category=FutureWarning)
warnings.filterwarnings("ignore", message=r"Please use DTensor instead", category=FutureWarning)
# megatron logs its configuration at INFO (whole config objects, bucket listings); keep our logs readable.
logging.getLogger("megatron").setLevel(logging.WARNING)
