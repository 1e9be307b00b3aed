# LLMRunner: one LLM data experiment from raw data to an evaluated model, many side by side.
# Read this file as the table of contents; the logic lives in the llmrunner package.
from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


include: "rules/common.smk"
include: "rules/prepare.smk"
include: "rules/udatasets.smk"
include: "rules/tokenize.smk"
include: "rules/convert.smk"
include: "rules/train.smk"
include: "rules/eval.smk"
include: "rules/report.smk"
include: "rules/archive.smk"


onstart:
    print(f"LLMRunner: experiments {', '.join(RUN.experiments)}; outputs under {RUN.datapool}/experiments/")


onsuccess:
    print(
        f"LLMRunner: done. Reports: {RUN.datapool}/reports/index.html (dashboard), "
        f"{RUN.datapool}/experiments/<exp>/reports/report.md, {RUN.datapool}/reports/compare.md"
    )


onerror:
    print("LLMRunner: a job failed; its log is printed above and kept under <datapool>/experiments/<exp>/logs/.")


# Every step's outputs, not only the reports: a failed job's outputs are rebuilt on the next run, and all
# that follows them redone, even where later outputs from an earlier run still exist. Like each step's target
# rule (rules/*.smk) it runs nothing, so Snakemake keeps it local without a localrule line.
rule all:
    default_target: True
    input:
        [p for e in RUN.experiments.values() for p in e.every_output()],
        f"{RUN.datapool}/reports/compare.md",
        f"{RUN.datapool}/reports/index.html",
