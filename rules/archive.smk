# archive: `snakemake archive` keeps, under <datapool>/archive/, what made each selected experiment with a
# baseline beat it (its primary metrics, on the final stage). Not part of the default target: entries are only
# ever added, and index.md says why each experiment was or was not archived.


rule archive:
    input:
        f"{RUN.datapool}/archive/index.md",


rule archive_index:
    input:
        # the comparison with the baselines needs every experiment's outputs and report
        comparison=f"{RUN.datapool}/reports/baselines.json",
    output:
        f"{RUN.datapool}/archive/index.md",
    log:
        f"{RUN.datapool}/archive/archive.log",
    localrule: True
    conda:
        ENV
    params:
        plan=RUN.archive_plan_json(),
    shell:
        "python -m llmrunner.archive --comparison {input.comparison:q} --plan {params.plan:q} --out {output:q}"
        " > {log:q} 2>&1"
