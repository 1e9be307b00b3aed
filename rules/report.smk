# report: one page per experiment, and every experiment side by side.


rule report:
    input:
        step_targets("report"),
        f"{RUN.datapool}/reports/compare.md",


rule report_experiment:
    input:
        lambda w: exp(w).report_inputs(),
    output:
        f"{ROOT}/reports/report.md",
    params:
        root=ROOT,
        # <datapool>/experiments/<exp>/reports/report.md -> <datapool>
        datapool=lambda w, output: os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(output[0])))),
    log:
        f"{ROOT}/logs/report.log",
    conda:
        "../envs/report.yaml"
    shell:
        "python -m llmrunner.report experiment --root {params.root:q} --datapool {params.datapool:q}"
        " --out {output:q} > {log:q} 2>&1"


rule report_compare:
    input:
        [e.report() for e in RUN.experiments.values()],
    output:
        f"{RUN.datapool}/reports/compare.md",
    params:
        experiments=list(RUN.experiments),
        datapool=lambda w, output: os.path.dirname(os.path.dirname(output[0])),
    log:
        f"{RUN.datapool}/reports/compare.log",
    conda:
        "../envs/report.yaml"
    shell:
        "python -m llmrunner.report compare --datapool {params.datapool:q} --experiments {params.experiments:q}"
        " --out {output:q} > {log:q} 2>&1"
