# prepare: the base model and the raw data, copied (or, for the demo, built) into the datapool.
rule prepare:
    input:
        step_targets("prepare"),


rule prepare_base_model:
    input:
        lambda w: exp(w).base_model_inputs(),
    output:
        directory(f"{ROOT}/model/base/{{model}}"),
    log:
        f"{ROOT}/logs/prepare_base_model.{{model}}.log",
    benchmark:
        f"{ROOT}/benchmarks/prepare_base_model.{{model}}.tsv"
    localrule: True
    conda:
        ENV
    params:
        src=lambda w: exp(w).pipeline["base_model"]["src"],
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
    localrule: True
    conda:
        ENV
    params:
        sources=lambda w: exp(w).prepare_source_args(w.kind, w.dataset),
    shell:
        "python -m llmrunner.prepare raw-data {params.sources:q} --out {output:q} > {log:q} 2>&1"
