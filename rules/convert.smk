# hf2mg / mg2hf: Hugging Face <-> Megatron checkpoints (built-in Qwen3 mapping, or the step's external
# `command`, whose output goes to the `command` log, with its `command_files` as inputs), parity-checked.


rule hf2mg:
    input:
        step_targets("hf2mg"),


rule mg2hf:
    input:
        step_targets("mg2hf"),


rule hf2mg_base:
    input:
        hf=lambda w: exp(w).base_model_path(),
        command_files=lambda w: RUN.command_files(w.exp, "hf2mg"),
    output:
        directory(f"{ROOT}/model/mg/base"),
    log:
        stage=f"{ROOT}/logs/hf2mg.base.log",
        command=f"{ROOT}/logs/hf2mg.base.command.log",
    benchmark:
        f"{ROOT}/benchmarks/hf2mg.base.tsv"
    conda:
        ENV
    threads: lambda w: RUN.threads(w.exp, "hf2mg")
    resources:
        **GPU_JOB,
    params:
        settings=lambda w: RUN.settings_json(w.exp, "hf2mg"),
    shell:
        "python -m llmrunner.convert hf2mg --hf {input.hf:q} --out {output:q}"
        " --settings {params.settings:q} --threads {threads} --command-log {log.command:q}"
        " > {log.stage:q} 2>&1"


rule mg2hf_stage:
    input:
        done=f"{ROOT}/model/{{stage}}_checkpoints/complete.json",
        side=lambda w: exp(w).base_model_path(),
        command_files=lambda w: RUN.command_files(w.exp, "mg2hf"),
    output:
        directory(f"{ROOT}/model/hf/{{stage}}"),
    log:
        stage=f"{ROOT}/logs/mg2hf.{{stage}}.log",
        command=f"{ROOT}/logs/mg2hf.{{stage}}.command.log",
    benchmark:
        f"{ROOT}/benchmarks/mg2hf.{{stage}}.tsv"
    conda:
        ENV
    threads: lambda w: RUN.threads(w.exp, "mg2hf")
    resources:
        **GPU_JOB,
    params:
        settings=lambda w: RUN.settings_json(w.exp, "mg2hf"),
        checkpoints=lambda w, input: os.path.dirname(input.done),
    shell:
        "python -m llmrunner.convert mg2hf --mg {params.checkpoints:q} --hf-side {input.side:q}"
        " --out {output:q} --settings {params.settings:q} --threads {threads} --command-log {log.command:q}"
        " > {log.stage:q} 2>&1"
