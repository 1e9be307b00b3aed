# tokenize_cpt / tokenize_sft: unified-schema jsonl -> Megatron indexed datasets (.bin/.idx).
# With `shards: 1` one job per dataset tokenizes it. With `shards: N` > 1, N shard jobs (tokenize_*_shard,
# each a contiguous block of the input lines, into data/tokenized/<kind>/.shards/) run in parallel and
# the dataset's job merges them into the same files one job writes.


rule tokenize_cpt:
    input:
        step_targets("tokenize_cpt"),


rule tokenize_sft:
    input:
        step_targets("tokenize_sft"),


rule tokenize_cpt_dataset:
    input:
        data=lambda w: exp(w).tokenize_input("cpt", w.dataset),
        tokenizer=lambda w: exp(w).base_model_path(),
        shards=lambda w: RUN.tokenize_shard_files(w.exp, "cpt", w.dataset),
    output:
        multiext(f"{ROOT}/data/tokenized/cpt/{{dataset}}_text_document", ".bin", ".idx"),
        stats=f"{ROOT}/data/tokenized/cpt/{{dataset}}.stats.json",
    log:
        f"{ROOT}/logs/tokenize_cpt.{{dataset}}.log",
    benchmark:
        f"{ROOT}/benchmarks/tokenize_cpt.{{dataset}}.tsv"
    conda:
        ENV
    threads: lambda w: RUN.tokenize_threads(w.exp, "cpt")
    resources:
        **CPU_JOB,
    params:
        settings=lambda w: RUN.tokenize_settings_json(w.exp, "tokenize_cpt"),
        prefix=f"{ROOT}/data/tokenized/cpt/{{dataset}}",
        merge=lambda w: RUN.tokenize_shard_prefixes(w.exp, "cpt", w.dataset),
    shell:
        "python -m llmrunner.tokenize cpt --input {input.data:q} --tokenizer {input.tokenizer:q}"
        " --out-prefix {params.prefix:q} --settings {params.settings:q} --threads {threads}"
        " --merge {params.merge:q} > {log:q} 2>&1"


rule tokenize_cpt_shard:
    input:
        data=lambda w: exp(w).tokenize_input("cpt", w.dataset),
        tokenizer=lambda w: exp(w).base_model_path(),
    output:
        temp(
            multiext(
                f"{ROOT}/data/tokenized/cpt/.shards/{{dataset}}.{{shard}}-of-{{shards}}_text_document", ".bin", ".idx"
            )
        ),
        stats=temp(f"{ROOT}/data/tokenized/cpt/.shards/{{dataset}}.{{shard}}-of-{{shards}}.stats.json"),
    log:
        f"{ROOT}/logs/tokenize_cpt.{{dataset}}.{{shard}}-of-{{shards}}.log",
    benchmark:
        f"{ROOT}/benchmarks/tokenize_cpt.{{dataset}}.{{shard}}-of-{{shards}}.tsv"
    wildcard_constraints:
        shard=r"\d+",
        shards=r"\d+",
    conda:
        ENV
    threads: lambda w: RUN.threads(w.exp, "tokenize_cpt")
    resources:
        **CPU_JOB,
    params:
        settings=lambda w: RUN.tokenize_settings_json(w.exp, "tokenize_cpt"),
        prefix=f"{ROOT}/data/tokenized/cpt/.shards/{{dataset}}.{{shard}}-of-{{shards}}",
    shell:
        "python -m llmrunner.tokenize cpt --input {input.data:q} --tokenizer {input.tokenizer:q}"
        " --out-prefix {params.prefix:q} --settings {params.settings:q} --threads {threads}"
        " --shard {wildcards.shard} --shards {wildcards.shards} > {log:q} 2>&1"


rule tokenize_sft_dataset:
    input:
        data=lambda w: exp(w).tokenize_input("sft", w.dataset),
        tokenizer=lambda w: exp(w).base_model_path(),
        shards=lambda w: RUN.tokenize_shard_files(w.exp, "sft", w.dataset),
    output:
        multiext(f"{ROOT}/data/tokenized/sft/{{dataset}}_text_document", ".bin", ".idx"),
        multiext(f"{ROOT}/data/tokenized/sft/{{dataset}}_loss_mask_document", ".bin", ".idx"),
        stats=f"{ROOT}/data/tokenized/sft/{{dataset}}.stats.json",
    log:
        f"{ROOT}/logs/tokenize_sft.{{dataset}}.log",
    benchmark:
        f"{ROOT}/benchmarks/tokenize_sft.{{dataset}}.tsv"
    conda:
        ENV
    threads: lambda w: RUN.tokenize_threads(w.exp, "sft")
    resources:
        **CPU_JOB,
    params:
        settings=lambda w: RUN.tokenize_settings_json(w.exp, "tokenize_sft"),
        prefix=f"{ROOT}/data/tokenized/sft/{{dataset}}",
        merge=lambda w: RUN.tokenize_shard_prefixes(w.exp, "sft", w.dataset),
    shell:
        "python -m llmrunner.tokenize sft --input {input.data:q} --tokenizer {input.tokenizer:q}"
        " --out-prefix {params.prefix:q} --settings {params.settings:q} --threads {threads}"
        " --merge {params.merge:q} > {log:q} 2>&1"


rule tokenize_sft_shard:
    input:
        data=lambda w: exp(w).tokenize_input("sft", w.dataset),
        tokenizer=lambda w: exp(w).base_model_path(),
    output:
        temp(
            multiext(
                f"{ROOT}/data/tokenized/sft/.shards/{{dataset}}.{{shard}}-of-{{shards}}_text_document", ".bin", ".idx"
            )
        ),
        temp(
            multiext(
                f"{ROOT}/data/tokenized/sft/.shards/{{dataset}}.{{shard}}-of-{{shards}}_loss_mask_document",
                ".bin",
                ".idx",
            )
        ),
        stats=temp(f"{ROOT}/data/tokenized/sft/.shards/{{dataset}}.{{shard}}-of-{{shards}}.stats.json"),
    log:
        f"{ROOT}/logs/tokenize_sft.{{dataset}}.{{shard}}-of-{{shards}}.log",
    benchmark:
        f"{ROOT}/benchmarks/tokenize_sft.{{dataset}}.{{shard}}-of-{{shards}}.tsv"
    wildcard_constraints:
        shard=r"\d+",
        shards=r"\d+",
    conda:
        ENV
    threads: lambda w: RUN.threads(w.exp, "tokenize_sft")
    resources:
        **CPU_JOB,
    params:
        settings=lambda w: RUN.tokenize_settings_json(w.exp, "tokenize_sft"),
        prefix=f"{ROOT}/data/tokenized/sft/.shards/{{dataset}}.{{shard}}-of-{{shards}}",
    shell:
        "python -m llmrunner.tokenize sft --input {input.data:q} --tokenizer {input.tokenizer:q}"
        " --out-prefix {params.prefix:q} --settings {params.settings:q} --threads {threads}"
        " --shard {wildcards.shard} --shards {wildcards.shards} > {log:q} 2>&1"
