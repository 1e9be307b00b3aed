# tokenize_cpt / tokenize_sft: unified-schema jsonl -> Megatron indexed datasets (.bin/.idx).


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
    output:
        multiext(f"{ROOT}/data/tokenized/cpt/{{dataset}}_text_document", ".bin", ".idx"),
        stats=f"{ROOT}/data/tokenized/cpt/{{dataset}}.stats.json",
    params:
        settings=lambda w: RUN.settings_json(w.exp, "tokenize_cpt"),
        prefix=f"{ROOT}/data/tokenized/cpt/{{dataset}}",
    threads: lambda w: RUN.threads(w.exp, "tokenize_cpt")
    log:
        f"{ROOT}/logs/tokenize_cpt.{{dataset}}.log",
    benchmark:
        f"{ROOT}/benchmarks/tokenize_cpt.{{dataset}}.tsv"
    conda:
        "../envs/tokenize.yaml"
    shell:
        "python -m llmrunner.tokenize cpt --input {input.data:q} --tokenizer {input.tokenizer:q}"
        " --out-prefix {params.prefix:q} --settings {params.settings:q} --threads {threads} > {log:q} 2>&1"


rule tokenize_sft_dataset:
    input:
        data=lambda w: exp(w).tokenize_input("sft", w.dataset),
        tokenizer=lambda w: exp(w).base_model_path(),
    output:
        multiext(f"{ROOT}/data/tokenized/sft/{{dataset}}_text_document", ".bin", ".idx"),
        multiext(f"{ROOT}/data/tokenized/sft/{{dataset}}_loss_mask_document", ".bin", ".idx"),
        stats=f"{ROOT}/data/tokenized/sft/{{dataset}}.stats.json",
    params:
        settings=lambda w: RUN.settings_json(w.exp, "tokenize_sft"),
        prefix=f"{ROOT}/data/tokenized/sft/{{dataset}}",
    threads: lambda w: RUN.threads(w.exp, "tokenize_sft")
    log:
        f"{ROOT}/logs/tokenize_sft.{{dataset}}.log",
    benchmark:
        f"{ROOT}/benchmarks/tokenize_sft.{{dataset}}.tsv"
    conda:
        "../envs/tokenize.yaml"
    shell:
        "python -m llmrunner.tokenize sft --input {input.data:q} --tokenizer {input.tokenizer:q}"
        " --out-prefix {params.prefix:q} --settings {params.settings:q} --threads {threads} > {log:q} 2>&1"
