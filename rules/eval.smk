# eval: lm-evaluation-harness on local task files, for the base model and each trained stage.


rule eval:
    input:
        step_targets("eval"),


rule eval_stage:
    input:
        model=lambda w: exp(w).hf_model(w.stage),
        data=lambda w: [exp(w).steps["eval"]["heldout"], exp(w).steps["eval"]["mc"]],
    output:
        directory(f"{ROOT}/reports/eval/{{stage}}"),
    params:
        settings=lambda w: RUN.settings_json(w.exp, "eval"),
    threads: lambda w: RUN.threads(w.exp, "eval")
    log:
        f"{ROOT}/logs/eval.{{stage}}.log",
    benchmark:
        f"{ROOT}/benchmarks/eval.{{stage}}.tsv"
    conda:
        "../envs/eval.yaml"
    shell:
        "python -m llmrunner.eval --model {input.model:q} --out {output:q}/results.json"
        " --settings {params.settings:q} --threads {threads} > {log:q} 2>&1"
