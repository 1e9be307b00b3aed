# udatasets: raw records of any shape -> the unified schema, validated, cleaned, de-duplicated.
# Scatter/gather: udatasets_shard (shard i of n of one dataset: per-record work, in parallel) ->
# udatasets_gather (one per dataset: de-dup across the datasets of its kind, outputs, stats).
# Decontamination (`decontaminate`) happens in the map jobs, against the listed eval sets (their files are
# inputs); the contamination report checks every training dataset against every registered set.


rule udatasets:
    input:
        step_targets("udatasets"),


rule udatasets_shard:
    input:
        raw=f"{ROOT}/data/raw/{{kind}}/{{dataset}}",
        adapter=lambda w: RUN.udatasets_adapter_inputs(w.exp, w.kind, w.dataset),
        tokenizer=lambda w: RUN.udatasets_tokenizer(w.exp),
        evalsets=lambda w: RUN.evalset_inputs(exp(w).steps["udatasets"]["decontaminate"]),
    output:
        temp(f"{ROOT}/data/processed/{{kind}}/.shards/{{dataset}}.{{shard}}-of-{{shards}}.jsonl"),
    log:
        f"{ROOT}/logs/udatasets_shard.{{kind}}.{{dataset}}.{{shard}}-of-{{shards}}.log",
    benchmark:
        f"{ROOT}/benchmarks/udatasets_shard.{{kind}}.{{dataset}}.{{shard}}-of-{{shards}}.tsv"
    wildcard_constraints:
        shard=r"\d+",
        shards=r"\d+",
    conda:
        ENV
    threads: lambda w: RUN.threads(w.exp, "udatasets")
    resources:
        **CPU_JOB,
    params:
        settings=lambda w: RUN.udatasets_settings_json(w.exp, w.kind, w.dataset, job="shard"),
        tokenizer=lambda w: "".join(RUN.udatasets_tokenizer(w.exp)),
        evalsets=lambda w: RUN.evalsets_json(exp(w).steps["udatasets"]["decontaminate"]),
    shell:
        "python -m llmrunner.udatasets shard --kind {wildcards.kind} --input {input.raw:q}"
        " --dataset {wildcards.dataset} --shard {wildcards.shard} --shards {wildcards.shards} --out {output:q}"
        " --settings {params.settings:q} --tokenizer={params.tokenizer:q} --evalsets {params.evalsets:q}"
        " --workers {threads} > {log:q} 2>&1"


rule udatasets_gather:
    input:
        lambda w: RUN.udatasets_shard_files(w.exp, w.kind, w.dataset, with_earlier=True),
    output:
        data=f"{ROOT}/data/processed/{{kind}}/{{dataset}}.jsonl",
        rejects=f"{ROOT}/data/processed/{{kind}}/{{dataset}}.rejects.jsonl",
        duplicates=f"{ROOT}/data/processed/{{kind}}/{{dataset}}.duplicates.jsonl",
        stats=f"{ROOT}/data/processed/{{kind}}/{{dataset}}.stats.json",
    log:
        f"{ROOT}/logs/udatasets_gather.{{kind}}.{{dataset}}.log",
    benchmark:
        f"{ROOT}/benchmarks/udatasets_gather.{{kind}}.{{dataset}}.tsv"
    conda:
        ENV
    resources:
        **CPU_JOB,
    params:
        settings=lambda w: RUN.udatasets_settings_json(w.exp, w.kind, w.dataset),
    shell:
        "python -m llmrunner.udatasets gather --kind {wildcards.kind} --shard-files {input:q}"
        " --out {output.data:q} --settings {params.settings:q} > {log:q} 2>&1"


rule contamination:
    input:
        data=lambda w: [exp(w).tokenize_input(k, d) for k in ("cpt", "sft") for d in exp(w).datasets(k)],
        evalsets=lambda w: RUN.evalset_inputs(exp(w).contamination_sets()),
    output:
        f"{ROOT}/reports/contamination.json",
    log:
        f"{ROOT}/logs/contamination.log",
    benchmark:
        f"{ROOT}/benchmarks/contamination.tsv"
    conda:
        ENV
    resources:
        **CPU_JOB,
    params:
        datasets=lambda w: exp(w).contamination_datasets(),
        evalsets=lambda w: RUN.evalsets_json(exp(w).contamination_sets()),
        ngram=lambda w: exp(w).steps["udatasets"]["decontaminate_ngram"],
        min_words=lambda w: exp(w).steps["udatasets"]["decontaminate_min_words"],
    shell:
        "python -m llmrunner.udatasets contamination --datasets {params.datasets:q} --evalsets {params.evalsets:q}"
        " --ngram {params.ngram} --min-words {params.min_words} --out {output:q} > {log:q} 2>&1"
