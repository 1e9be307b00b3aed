"""TrainSettings: the train_cpt / train_sft steps' config (steps/4.train_cpt.yaml, steps/7.train_sft.yaml
after validation). Names follow Megatron-LM's arguments where one exists."""
from __future__ import annotations

from dataclasses import asdict, dataclass

from llmrunner.errors import ConfigError
from llmrunner.schemas import load_schema
from llmrunner.settings import settings_from_dict

# Settings that change speed or memory but never the weights: left out of the resume fingerprint.
NOT_IN_FINGERPRINT = ("threads", "stop_before_time_limit", "slurm", "recompute", "recompute_method",
                      "recompute_num_layers")


@dataclass(frozen=True)
class TrainSettings:
    """Every key's type, default and range: config/schemas/train.schema.json."""

    train_iters: int
    """Optimizer steps in the whole run (each consumes global_batch_size sequences)."""

    seq_length: int
    """Tokens per training sequence."""

    micro_batch_size: int
    """Sequences per forward/backward pass on one data-parallel rank."""

    global_batch_size: int
    """Sequences per optimizer step, over all data-parallel ranks; a multiple of
    micro_batch_size x data-parallel size (the rest is gradient accumulation)."""

    lr: float
    """Peak learning rate, reached at the end of warmup."""

    min_lr: float
    """Learning rate at the end of decay."""

    warmup_iters: int
    """Linear warmup from 0 to lr over this many steps (fewer than train_iters)."""

    lr_decay_style: str
    """Decay after warmup until train_iters: cosine, linear or constant."""

    weight_decay: float
    """AdamW weight decay (not applied to norms)."""

    adam_beta1: float
    """Adam beta1."""

    adam_beta2: float
    """Adam beta2."""

    adam_eps: float
    """Adam epsilon."""

    clip_grad: float
    """Clip the global gradient norm to this value (0: no clipping)."""

    seed: int
    """Seed for initialisation state, data order and dropout RNGs."""

    save_interval: int
    """Save a checkpoint every this many steps (and always at the end)."""

    keep_last: int
    """Keep only the newest this-many checkpoints (0: keep all)."""

    log_interval: int
    """Print a progress line every this many steps (metrics.jsonl gets every step)."""

    eval_interval: int
    """Compute validation loss every this many steps and at the end (0: never)."""

    eval_iters: int
    """Validation batches (of global_batch_size sequences) per evaluation; the same ones every time."""

    split: str
    """Train/validation/test proportions of each dataset's documents (CPT) or conversations (SFT),
    as Megatron-LM's --split; the test part is unused."""

    blend: dict[str, float]
    """Sampling weight per dataset name (the data prefix's file name); unlisted datasets weigh 1,
    0 leaves a dataset out of the mix."""

    precision: str
    """fp32, or bf16 (bf16 weights with fp32 master weights, as on GPUs; runs on a CPU too, which is how the
    tests check it, at a speed that depends on the CPU's bf16 support)."""

    nproc_per_node: int
    """Training processes per node; above 1 the entry point runs itself under torchrun. 1 (the default)
    means one per GPU the job got on the node in a SLURM job with GPUs. The data-parallel size is
    processes x nodes / (tensor_parallel x pipeline_parallel)."""

    tensor_parallel: int
    """Tensor-parallel size (the number of processes must be a multiple of tp x pp)."""

    pipeline_parallel: int
    """Pipeline-parallel size."""

    sequence_parallel: bool
    """Megatron's sequence parallelism: the work outside attention and MLP is split along the sequence over the
    tensor-parallel ranks (only with tensor_parallel > 1)."""

    recompute: str
    """Activation recomputation: none, selective (core attention) or full (whole layers, see recompute_method);
    megatron-core's recompute_granularity."""

    recompute_method: str
    """With full recompute: uniform (chunks of recompute_num_layers layers) or block (the first
    recompute_num_layers layers of each pipeline stage)."""

    recompute_num_layers: int
    """With full recompute: layers per chunk (uniform) or recomputed layers per pipeline stage (block)."""

    transformer_impl: str
    """Layer implementation: auto, local (megatron-core's layers, SDPA attention) or transformer_engine."""

    use_distributed_optimizer: bool
    """Shard the optimizer state (fp32 main weights, Adam moments) over the data-parallel ranks, as
    Megatron-LM's --use-distributed-optimizer (ZeRO-1): gradients are reduce-scattered, each rank updates
    its shard, the weights are all-gathered. Same training curve, less memory per rank. With data-parallel
    size 1 there is nothing to shard: it runs like the plain optimizer and the run logs a warning."""

    stop_before_time_limit: int
    """In a SLURM job with a time limit: save a checkpoint and exit (status 140, resumed by the rerun)
    after the first step that ends later than this many seconds before the limit; 0: never. Must cover
    one step plus a save. Does not change the result's identity."""

    threads: int
    """CPU threads for torch (`torch.set_num_threads`) in each process; does not change the result's identity."""

    slurm: dict | None
    """The SLURM request of the training job (nodes, gpus_per_node, gpu_type, mem_mb, runtime): read by the
    workflow's train_stage rule as its resources, never by the stage (None there)."""

    @classmethod
    def from_dict(cls, values: dict) -> TrainSettings:
        return settings_from_dict(cls, values, load_schema("train"), "train")

    def fingerprint(self) -> dict:
        """The settings that decide the trained weights (resume only when these are unchanged)."""
        return {k: v for k, v in asdict(self).items() if k not in NOT_IN_FINGERPRINT}

    def __post_init__(self) -> None:
        # Types and ranges are the schema's; these rules involve several keys.
        problems = []
        model_parallel = self.tensor_parallel * self.pipeline_parallel
        if self.warmup_iters >= self.train_iters:
            problems.append(f"`warmup_iters` {self.warmup_iters} must be below `train_iters` {self.train_iters}: "
                            "lower warmup_iters or raise train_iters")
        if self.nproc_per_node > 1 and self.nproc_per_node % model_parallel:
            problems.append(f"`nproc_per_node` {self.nproc_per_node} is not a multiple of tensor_parallel x "
                            f"pipeline_parallel = {model_parallel}: change one of them")
        # With nproc_per_node 1 the process count is the job's GPU count, known only when it runs.
        data_parallel = max(self.nproc_per_node // model_parallel, 1)
        step_unit = self.micro_batch_size * data_parallel
        if self.global_batch_size % step_unit:
            problems.append(f"`global_batch_size` {self.global_batch_size} is not a multiple of micro_batch_size "
                            f"x data-parallel size = {self.micro_batch_size} x {data_parallel}: make it one "
                            f"(e.g. {step_unit * max(1, self.global_batch_size // step_unit)})")
        if self.min_lr > self.lr:
            problems.append(f"`min_lr` {self.min_lr} is above `lr` {self.lr}: lower min_lr")
        if self.sequence_parallel and self.tensor_parallel == 1:
            problems.append("`sequence_parallel` needs `tensor_parallel` > 1 (it splits the sequence over the "
                            "tensor-parallel ranks): raise tensor_parallel or set sequence_parallel false")
        elif self.sequence_parallel and self.seq_length % self.tensor_parallel:
            problems.append(f"`sequence_parallel` splits each sequence over the tensor-parallel ranks: `seq_length` "
                            f"{self.seq_length} must be a multiple of `tensor_parallel` {self.tensor_parallel}: "
                            "change one of them")
        if float(self.split.split(",")[0]) <= 0:
            problems.append(f"`split` {self.split!r} gives the training part no share: its first number must be > 0")
        if problems:
            raise ConfigError("train settings: " + "; ".join(problems) + ".")

    def split_fractions(self) -> list[float]:
        """`split` as three fractions summing to 1."""
        parts = [float(p) for p in self.split.split(",")]
        return [p / sum(parts) for p in parts]
