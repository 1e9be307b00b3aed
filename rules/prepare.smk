# prepare: the base model and the raw data, copied (or, for the demo, built) into the datapool.
rule prepare:
    input:
        step_targets("prepare"),


rule prepare_base_model:
    input:
        lambda w: exp(w).base_model_inputs(),
    output:
        directory(f"{ROOT}/model/base/{{model}}"),
    params:
        src=lambda w: exp(w).pipeline["base_model"]["src"],
    log:
        f"{ROOT}/logs/prepare_base_model.{{model}}.log",
    benchmark:
        f"{ROOT}/benchmarks/prepare_base_model.{{model}}.tsv"
    conda:
        "../envs/prepare.yaml"
    shell:
        "python -m llmrunner.prepare base-model --src {params.src:q} --out {output:q} > {log:q} 2>&1"


rule prepare_raw_data:
    input:
        lambda w: exp(w).sources(w.kind, w.dataset),
    output:
        directory(f"{ROOT}/data/raw/{{kind}}/{{dataset}}"),
    log:
        f"{ROOT}/logs/prepare_raw_data.{{kind}}.{{dataset}}.log",
    benchmark:
        f"{ROOT}/benchmarks/prepare_raw_data.{{kind}}.{{dataset}}.tsv"
    conda:
        "../envs/prepare.yaml"
    shell:
        "python -m llmrunner.prepare raw-data --sources {input:q} --out {output:q} > {log:q} 2>&1"
