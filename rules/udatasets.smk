# udatasets: raw records of any shape -> the unified schema, validated, cleaned, de-duplicated.


rule udatasets:
    input:
        step_targets("udatasets"),


rule udatasets_clean:
    input:
        raw=f"{ROOT}/data/raw/{{kind}}/{{dataset}}",
        adapter=lambda w: RUN.udatasets_adapter_inputs(w.exp, w.kind, w.dataset),
    output:
        data=f"{ROOT}/data/processed/{{kind}}/{{dataset}}.jsonl",
        rejects=f"{ROOT}/data/processed/{{kind}}/{{dataset}}.rejects.jsonl",
        duplicates=f"{ROOT}/data/processed/{{kind}}/{{dataset}}.duplicates.jsonl",
        stats=f"{ROOT}/data/processed/{{kind}}/{{dataset}}.stats.json",
    params:
        settings=lambda w: RUN.udatasets_settings_json(w.exp, w.kind, w.dataset),
    log:
        f"{ROOT}/logs/udatasets.{{kind}}.{{dataset}}.log",
    benchmark:
        f"{ROOT}/benchmarks/udatasets.{{kind}}.{{dataset}}.tsv"
    conda:
        "../envs/udatasets.yaml"
    shell:
        "python -m llmrunner.udatasets --kind {wildcards.kind} --input {input.raw:q} --out {output.data:q}"
        " --settings {params.settings:q} > {log:q} 2>&1"
