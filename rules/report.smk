# report: one page per experiment, and every experiment side by side; the HTML dashboard (docs/reports.md) and
# the training-loss figures are registered for `snakemake --report`.


rule report:
    input:
        step_targets("report"),
        f"{RUN.datapool}/reports/compare.md",
        f"{RUN.datapool}/reports/index.html",


rule report_experiment:
    input:
        lambda w: exp(w).report_inputs(),
    output:
        report=PATHS.report(),
        # the resolved config, which the comparison with a baseline diffs
        config=PATHS.config_record(),
        loss=report(PATHS.loss_plot(), category="Training loss", subcategory="{exp}"),
    log:
        f"{ROOT}/logs/report.log",
    localrule: True
    conda:
        ENV
    params:
        root=ROOT,
        config=lambda w: RUN.resolved_config_json(w.exp),
        # <datapool>/experiments/<exp>/reports/report.md -> <datapool>
        datapool=lambda w, output: os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(output[0])))),
    shell:
        "printf '%s\\n' {params.config:q} > {output.config:q} &&"
        " python -m llmrunner.report experiment --root {params.root:q} --datapool {params.datapool:q}"
        " --out {output.report:q} > {log:q} 2>&1"


# Also each experiment against its baseline (pipeline.yaml `baseline`): baselines.json holds those paired
# differences for `snakemake archive`. A baseline outside this run is read from the datapool when it was run.
# Then the dashboard, which shows that comparison: index.html, and each experiment's report.html (beside its
# baseline).
rule report_compare:
    input:
        [e.report() for e in RUN.experiments.values()],
        [e.config_record() for e in RUN.experiments.values()],
        RUN.baseline_inputs(),
    output:
        compare=f"{RUN.datapool}/reports/compare.md",
        baselines=f"{RUN.datapool}/reports/baselines.json",
        index=report(f"{RUN.datapool}/reports/index.html", category="Dashboard", subcategory="all experiments"),
        pages=[
            report(e.dashboard_page(), category="Dashboard", subcategory=name) for name, e in RUN.experiments.items()
        ],
    log:
        f"{RUN.datapool}/reports/compare.log",
    localrule: True
    conda:
        ENV
    params:
        experiments=list(RUN.experiments),
        datapool=lambda w, output: os.path.dirname(os.path.dirname(output.compare)),
    shell:
        "(python -m llmrunner.report compare --datapool {params.datapool:q} --experiments {params.experiments:q}"
        " --out {output.compare:q} && python -m llmrunner.report dashboard --datapool {params.datapool:q}"
        " --experiments {params.experiments:q} --out {output.index:q}) > {log:q} 2>&1"


# Feedback pages (docs/feedback.md): flipped eval items, largest per-item gains and losses, samples of the data
# that changed — against the baseline, or the final stage against base when there is none.
rule report_feedback:
    input:
        lambda w: RUN.feedback_inputs(w.exp),
    output:
        directory(PATHS.feedback_dir()),
    log:
        f"{ROOT}/logs/report_feedback.log",
    localrule: True
    conda:
        ENV
    params:
        root=ROOT,
        baseline=lambda w: RUN.feedback_baseline_args(w.exp),
    shell:
        "python -m llmrunner.report feedback --root {params.root:q} {params.baseline:q} --out {output:q}"
        " > {log:q} 2>&1"
