"""Where each step's files live in an experiment's datapool (the table in datapool/README.md; which rule
writes which: docs/architecture.md).

One place for every path, so rules, reports and tests agree. All paths are strings relative to
the workflow's working directory, rooted at DATAPOOL_ROOT (`<datapool>/experiments/<exp>`).
"""
from __future__ import annotations


class ExperimentLayout:
    """Path answers for one experiment; mixed into config.Experiment (which provides root,
    enabled(), datasets(), eval_stages(), contamination_sets(), base_model_path())."""

    root: str

    def __init__(self, root: str) -> None:
        """The paths alone, under `root`: an experiment's folder, or the rules' pattern `<datapool>/experiments/{exp}`
        (config.Experiment, a dataclass, has its own __init__)."""
        self.root = root

    def path(self, *parts: str) -> str:
        return "/".join((self.root, *parts))

    def raw_dir(self, kind: str, dataset: str) -> str:
        return self.path("data", "raw", kind, dataset)

    def processed(self, kind: str, dataset: str) -> str:
        return self.path("data", "processed", kind, f"{dataset}.jsonl")

    def udatasets_outputs(self, kind: str, dataset: str) -> list[str]:
        """What a dataset's udatasets gather job writes: the kept records, rejects, duplicates and stats."""
        names = [f"{dataset}.{suffix}" for suffix in ("jsonl", "rejects.jsonl", "duplicates.jsonl", "stats.json")]
        return [self.path("data", "processed", kind, name) for name in names]

    def udatasets_shard(self, kind: str, dataset: str, shard: int, shards: int) -> str:
        """A udatasets map job's output (an intermediate, removed once the gather jobs have read it)."""
        return self.path("data", "processed", kind, ".shards", f"{dataset}.{shard}-of-{shards}.jsonl")

    def tokenize_input(self, kind: str, dataset: str) -> str:
        """Processed data, or the raw folder (already in the unified schema) when udatasets is off."""
        return self.processed(kind, dataset) if self.enabled("udatasets") else self.raw_dir(kind, dataset)

    def tokenized_prefix(self, kind: str, dataset: str) -> str:
        return self.path("data", "tokenized", kind, dataset)

    def tokenized_files(self, kind: str, dataset: str) -> list[str]:
        return tokenize_outputs(self.tokenized_prefix(kind, dataset), kind)

    def tokenize_shard_prefix(self, kind: str, dataset: str, shard: int, shards: int) -> str:
        """A tokenize shard job's output prefix (intermediate: removed once the merge job has read it)."""
        return self.path("data", "tokenized", kind, ".shards", f"{dataset}.{shard}-of-{shards}")

    def mg_base(self) -> str:
        return self.path("model", "mg", "base")

    def checkpoints(self, stage: str) -> str:
        return self.path("model", f"{stage}_checkpoints")

    def train_done(self, stage: str) -> str:
        return self.path("model", f"{stage}_checkpoints", "complete.json")

    def train_init(self, stage: str) -> tuple[str, str]:
        """(file the rule waits for, checkpoint folder to start from). SFT continues from CPT when
        CPT is on, else from the converted base model."""
        if stage == "sft" and self.enabled("train_cpt"):
            return self.train_done("cpt"), self.checkpoints("cpt")
        return self.mg_base(), self.mg_base()

    def hf_model(self, stage: str) -> str:
        return self.base_model_path() if stage == "base" else self.path("model", "hf", stage)

    def eval_dir(self, stage: str) -> str:
        return self.path("reports", "eval", stage)

    def report(self) -> str:
        return self.path("reports", "report.md")

    def loss_plot(self) -> str:
        """The training-loss figure the report writes (report.md shows it)."""
        return self.path("reports", "loss.png")

    def dashboard_page(self) -> str:
        """The experiment's page of the dashboard (self-contained HTML)."""
        return self.path("reports", "report.html")

    def config_record(self) -> str:
        """The resolved config the report job records (what a comparison with a baseline diffs)."""
        return self.path("reports", "config.json")

    def feedback_dir(self) -> str:
        """Feedback pages: flipped eval items, per-item gains and losses, samples of the data that changed."""
        return self.path("reports", "feedback")

    def contamination_report(self) -> str:
        """n-gram overlap of every training dataset with every registered eval set."""
        return self.path("reports", "contamination.json")

    def contamination_outputs(self) -> list[str]:
        """[the contamination report] when there is training data and a set to check it against, else []."""
        has_data = any(self.datasets(k) for k in ("cpt", "sft"))
        return [self.contamination_report()] if has_data and self.contamination_sets() else []

    def step_outputs(self, step: str) -> list[str]:
        """What the target rule `snakemake <step>` builds for this experiment ([] when off)."""
        if step == "prepare":
            return [self.base_model_path()] + [self.raw_dir(k, d) for k in ("cpt", "sft") for d in self.datasets(k)]
        if step == "report":
            return [self.report(), self.feedback_dir()]
        if not self.enabled(step):
            return []
        if step == "udatasets":
            return [f for k in ("cpt", "sft") for d in self.datasets(k) for f in self.udatasets_outputs(k, d)]
        if step in ("tokenize_cpt", "tokenize_sft"):
            kind = step.split("_")[1]
            return [f for d in self.datasets(kind) for f in self.tokenized_files(kind, d)]
        if step == "hf2mg":
            return [self.mg_base()]
        if step in ("train_cpt", "train_sft"):
            return [self.train_done(step.split("_")[1])]
        if step == "mg2hf":
            return [self.hf_model(k) for k in ("cpt", "sft") if self.enabled(f"train_{k}")]
        if step == "eval":
            return [self.eval_dir(s) for s in self.eval_stages()]
        raise KeyError(step)

    def report_inputs(self) -> list[str]:
        """Everything the experiment's report summarises: every enabled step's outputs."""
        steps = ("udatasets", "tokenize_cpt", "tokenize_sft", "train_cpt", "train_sft", "mg2hf", "eval")
        return [p for step in steps for p in self.step_outputs(step)] + self.contamination_outputs()

    def every_output(self) -> list[str]:
        """Every step's own outputs and the report: the default target. Snakemake deletes a failed job's
        outputs; naming them all here makes the next run rebuild them, and everything after them, instead
        of taking the older downstream outputs as up to date."""
        steps = ("prepare", "udatasets", "tokenize_cpt", "tokenize_sft", "hf2mg", "train_cpt", "train_sft",
                 "mg2hf", "eval", "report")
        return [p for step in steps for p in self.step_outputs(step)] + self.contamination_outputs()


def tokenize_outputs(prefix: str, kind: str) -> list[str]:
    """What a tokenize job writes for `prefix`: the indexed datasets (SFT: ids and loss mask) and the stats."""
    names = ["text_document"] + (["loss_mask_document"] if kind == "sft" else [])
    return [f"{prefix}_{n}.{ext}" for n in names for ext in ("bin", "idx")] + [f"{prefix}.stats.json"]
