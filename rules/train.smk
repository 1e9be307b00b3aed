# train_cpt / train_sft: megatron-core training. The declared output is a completion file, so
# Snakemake never deletes checkpoints; the trainer resumes or starts fresh (docs/stages.md). The rest of the
# checkpoint folder (iter_*/, logs/metrics.jsonl, TensorBoard events, megatron's .data_cache/) and its .lock
# file stay undeclared on purpose: Snakemake deletes a failed job's outputs, and the rerun resumes from them.


rule train_cpt:
    input:
        step_targets("train_cpt"),


rule train_sft:
    input:
        step_targets("train_sft"),


rule train_stage:
    input:
        init=lambda w: exp(w).train_init(w.stage)[0],
        data=lambda w: [f for d in exp(w).datasets(w.stage) for f in exp(w).tokenized_files(w.stage, d)],
    output:
        f"{ROOT}/model/{{stage}}_checkpoints/complete.json",
    log:
        f"{ROOT}/logs/train_{{stage}}.log",
    benchmark:
        f"{ROOT}/benchmarks/train_{{stage}}.tsv"
    wildcard_constraints:
        stage="cpt|sft",
    conda:
        ENV
    threads: lambda w: RUN.threads(w.exp, f"train_{w.stage}")
    resources:
        # the step's `slurm` settings: what the job asks SLURM for (local runs ignore them)
        nodes=lambda w: RUN.slurm_resources(w.exp, f"train_{w.stage}")["nodes"],
        gres=lambda w: RUN.slurm_resources(w.exp, f"train_{w.stage}")["gres"],
        mem_mb=lambda w: RUN.slurm_resources(w.exp, f"train_{w.stage}")["mem_mb"],
        runtime=lambda w: RUN.slurm_resources(w.exp, f"train_{w.stage}")["runtime"],
    params:
        settings=lambda w: RUN.settings_json(w.exp, f"train_{w.stage}"),
        init=lambda w: exp(w).train_init(w.stage)[1],
        prefixes=lambda w: [exp(w).tokenized_prefix(w.stage, d) for d in exp(w).datasets(w.stage)],
        save=f"{ROOT}/model/{{stage}}_checkpoints",
    shell:
        "python -m llmrunner.train {wildcards.stage} --init {params.init:q} --data {params.prefixes:q}"
        " --save {params.save:q} --done {output:q} --settings {params.settings:q} --threads {threads}"
        " > {log:q} 2>&1"
