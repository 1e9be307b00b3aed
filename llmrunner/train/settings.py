"""TrainSettings: the train_cpt / train_sft steps' config (steps/4.train_cpt.yaml, steps/7.train_sft.yaml
after validation). Names follow Megatron-LM's arguments where one exists."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

from llmrunner.errors import ConfigError
from llmrunner.settings import settings_from_dict

DECAY_STYLES = ("cosine", "linear", "constant")
PRECISIONS = ("fp32", "bf16")
# Settings that change speed but never the weights: left out of the resume fingerprint.
NOT_IN_FINGERPRINT = ("threads", "stop_before_time_limit")


@dataclass(frozen=True)
class TrainSettings:
    train_iters: int = 100
    """Optimizer steps in the whole run (each consumes global_batch_size sequences)."""

    seq_length: int = 256
    """Tokens per training sequence."""

    micro_batch_size: int = 8
    """Sequences per forward/backward pass on one data-parallel rank."""

    global_batch_size: int = 8
    """Sequences per optimizer step, over all data-parallel ranks; a multiple of
    micro_batch_size x data-parallel size (the rest is gradient accumulation)."""

    lr: float = 1e-3
    """Peak learning rate, reached at the end of warmup."""

    min_lr: float = 1e-4
    """Learning rate at the end of decay."""

    warmup_iters: int = 10
    """Linear warmup from 0 to lr over this many steps (fewer than train_iters)."""

    lr_decay_style: str = "cosine"
    """Decay after warmup until train_iters: cosine, linear or constant."""

    weight_decay: float = 0.01
    """AdamW weight decay (not applied to norms)."""

    adam_beta1: float = 0.9
    """Adam beta1."""

    adam_beta2: float = 0.95
    """Adam beta2."""

    adam_eps: float = 1e-8
    """Adam epsilon."""

    clip_grad: float = 1.0
    """Clip the global gradient norm to this value (0: no clipping)."""

    seed: int = 1234
    """Seed for initialisation state, data order and dropout RNGs."""

    save_interval: int = 50
    """Save a checkpoint every this many steps (and always at the end)."""

    keep_last: int = 2
    """Keep only the newest this-many checkpoints (0: keep all)."""

    log_interval: int = 10
    """Print a progress line every this many steps (metrics.jsonl gets every step)."""

    eval_interval: int = 50
    """Compute validation loss every this many steps and at the end (0: never)."""

    eval_iters: int = 4
    """Validation batches (of global_batch_size sequences) per evaluation; the same ones every time."""

    split: str = "98,2,0"
    """Train/validation/test proportions of each dataset's documents (CPT) or conversations (SFT),
    as Megatron-LM's --split; the test part is unused."""

    blend: dict[str, float] = field(default_factory=dict)
    """Sampling weight per dataset name (the data prefix's file name); unlisted datasets weigh 1,
    0 leaves a dataset out of the mix."""

    precision: str = "fp32"
    """fp32, or bf16 (bf16 weights with fp32 master weights, as on GPUs; runs on a CPU too, which is how the
    tests check it, at a speed that depends on the CPU's bf16 support)."""

    nproc_per_node: int = 1
    """Training processes per node; above 1 the entry point runs itself under torchrun. 1 (the default)
    means one per GPU the job got on the node in a SLURM job with GPUs. The data-parallel size is
    processes x nodes / (tensor_parallel x pipeline_parallel)."""

    tensor_parallel: int = 1
    """Tensor-parallel size (the number of processes must be a multiple of tp x pp)."""

    pipeline_parallel: int = 1
    """Pipeline-parallel size."""

    use_distributed_optimizer: bool = False
    """Shard the optimizer state (fp32 main weights, Adam moments) over the data-parallel ranks, as
    Megatron-LM's --use-distributed-optimizer (ZeRO-1): gradients are reduce-scattered, each rank updates
    its shard, the weights are all-gathered. Same training curve, less memory per rank. With data-parallel
    size 1 there is nothing to shard: it runs like the plain optimizer and the run logs a warning."""

    stop_before_time_limit: int = 600
    """In a SLURM job with a time limit: save a checkpoint and exit (status 140, resumed by the rerun)
    after the first step that ends later than this many seconds before the limit; 0: never. Must cover
    one step plus a save. Does not change the result's identity."""

    threads: int = 2
    """CPU threads for torch (`torch.set_num_threads`) in each process; does not change the result's identity."""

    @classmethod
    def from_dict(cls, values: dict) -> TrainSettings:
        return settings_from_dict(cls, values, "train")

    def fingerprint(self) -> dict:
        """The settings that decide the trained weights (resume only when these are unchanged)."""
        return {k: v for k, v in asdict(self).items() if k not in NOT_IN_FINGERPRINT}

    def __post_init__(self) -> None:
        problems = []
        positive = ("train_iters", "seq_length", "micro_batch_size", "global_batch_size", "save_interval",
                    "log_interval", "nproc_per_node", "tensor_parallel", "pipeline_parallel", "threads")
        for name in positive:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                problems.append(f"`{name}` must be a positive integer, got {value!r}")
        for name in ("warmup_iters", "keep_last", "eval_interval", "eval_iters", "seed", "stop_before_time_limit"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                problems.append(f"`{name}` must be a non-negative integer, got {value!r}")
        if not problems:
            if self.global_batch_size % self.micro_batch_size:
                problems.append(f"`global_batch_size` {self.global_batch_size} is not a multiple of "
                                f"`micro_batch_size` {self.micro_batch_size}")
            if self.warmup_iters >= self.train_iters:
                problems.append(f"`warmup_iters` {self.warmup_iters} must be below `train_iters` {self.train_iters}")
        if not 0 <= self.min_lr <= self.lr:
            problems.append(f"need 0 <= `min_lr` <= `lr`, got min_lr {self.min_lr!r}, lr {self.lr!r}")
        if self.lr_decay_style not in DECAY_STYLES:
            problems.append(f"`lr_decay_style` {self.lr_decay_style!r} is not one of {list(DECAY_STYLES)}")
        if self.precision not in PRECISIONS:
            problems.append(f"`precision` {self.precision!r} is not one of {list(PRECISIONS)}")
        if not isinstance(self.use_distributed_optimizer, bool):
            problems.append("`use_distributed_optimizer` must be true or false, got "
                            f"{self.use_distributed_optimizer!r}")
        if self.weight_decay < 0 or self.clip_grad < 0:
            problems.append("`weight_decay` and `clip_grad` must be >= 0")
        problems += _split_problems(self.split)
        bad_weights = {k: v for k, v in self.blend.items() if not isinstance(v, (int, float)) or v < 0}
        if bad_weights:
            problems.append(f"`blend` weights must be numbers >= 0, got {bad_weights}")
        if problems:
            raise ConfigError("train settings: " + "; ".join(problems) + ".")

    def split_fractions(self) -> list[float]:
        """`split` as three fractions summing to 1."""
        parts = [float(p) for p in self.split.split(",")]
        parts += [0.0] * (3 - len(parts))
        return [p / sum(parts) for p in parts]


def _split_problems(split: str) -> list[str]:
    try:
        parts = [float(p) for p in split.split(",")]
    except (AttributeError, ValueError):
        return [f"`split` {split!r} must be comma-separated numbers such as '98,2,0'"]
    if not 1 <= len(parts) <= 3 or any(p < 0 for p in parts) or parts[0] <= 0:
        return [f"`split` {split!r} needs 1-3 non-negative numbers with a positive training part"]
    return []
