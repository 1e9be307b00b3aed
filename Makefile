# make demo   create .venv if absent, install, run the demo data study end to end: the demo experiment and its
#             ablation demo-no-python_docs (CPT without the Python docs), compared in datapool/reports/compare.md
# make test   the whole test suite (what CI runs)
# make dag    draw the rule graph to dag.svg (needs graphviz)
VENV ?= .venv
PY := $(VENV)/bin/python
export PATH := $(abspath $(VENV))/bin:$(PATH)
export HF_HUB_OFFLINE := 1

.PHONY: install demo test dag lint clean-demo

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --upgrade pip -q
	# torch first, pinned: a plain `torch` requirement would pull a multi-GB CUDA build
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -c constraints.txt -e '.[test]'
	# tests only: litellm ships DeepSeek's tokenizer.json (vocab 129,280), a large real vocabulary
	# for the int32 .bin test; its own dependencies are not needed for that
	$(PY) -m pip install -q --no-deps litellm==1.110.2
	touch $@

demo: install
	$(VENV)/bin/snakemake --profile profiles/local --config experiments=[demo,demo-no-python_docs]

test: install
	$(PY) -m pytest -v

dag: install
	$(VENV)/bin/snakemake --rulegraph | dot -Tsvg > dag.svg

lint: install
	$(VENV)/bin/snakemake --lint

clean-demo:
	rm -rf datapool/experiments/demo datapool/experiments/demo-no-python_docs datapool/reports
