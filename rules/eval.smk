# eval: score the base model and each trained stage on the registered eval sets the eval step lists
# (config/evalsets/<name>.yaml; docs/evaluation.md), with lm-evaluation-harness. Each job also records the
# set versions it scored under <datapool>/evalsets/<name>/<version>.json: written once, by whichever job scores
# that version first, and shared by every experiment, so no one job declares it.
from pathlib import Path


rule eval:
    input:
        step_targets("eval"),


rule eval_stage:
    input:
        model=lambda w: exp(w).hf_model(w.stage),
        evalsets=lambda w: RUN.evalset_inputs(exp(w).eval_sets()),
    output:
        directory(f"{ROOT}/reports/eval/{{stage}}"),
    log:
        f"{ROOT}/logs/eval.{{stage}}.log",
    benchmark:
        f"{ROOT}/benchmarks/eval.{{stage}}.tsv"
    conda:
        ENV
    threads: lambda w: RUN.threads(w.exp, "eval")
    resources:
        **EVAL_JOB,
    params:
        settings=lambda w: RUN.settings_json(w.exp, "eval"),
        evalsets=lambda w: RUN.evalsets_json(exp(w).eval_sets()),
        # <datapool>/experiments/<exp>/reports/eval/<stage> -> <datapool>
        datapool=lambda w, output: str(Path(output[0]).parents[4]),
    shell:
        "python -m llmrunner.eval --model {input.model:q} --stage {wildcards.stage} --out {output:q}/results.json"
        " --settings {params.settings:q} --evalsets {params.evalsets:q} --datapool {params.datapool:q}"
        " --threads {threads} > {log:q} 2>&1"
