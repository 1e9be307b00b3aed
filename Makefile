# make demo   create .venv if absent, install, run the demo data study end to end: the demo experiment and its
#             ablation demo-no-python_docs (CPT without the Python docs), compared in datapool/reports/compare.md
# make test   the whole test suite (what CI runs)
# make test-fast  the unit tests that take seconds (no workflow, SLURM, GPU or slow tests): under 2 minutes
# make dag    draw the demo study's rule graph to docs/dag.svg (needs graphviz; docs/architecture.md shows it)
VENV ?= .venv
# where pip gets torch (README, Installing): empty = pip's configured index; CPU-only machines:
# https://download.pytorch.org/whl/cpu, CUDA GPUs: https://download.pytorch.org/whl/cu128
TORCH_INDEX_URL ?=
PY := $(VENV)/bin/python
export PATH := $(abspath $(VENV))/bin:$(PATH)
export HF_HUB_OFFLINE := 1

.PHONY: install install-test demo test test-fast dag lint clean-demo

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --upgrade pip -q
	# torch first, pinned, from TORCH_INDEX_URL when set: the project's own install then keeps that build
	$(PY) -m pip install -q torch==2.13.0 $(if $(TORCH_INDEX_URL),--index-url $(TORCH_INDEX_URL))
	$(PY) -m pip install -q -c constraints.txt -e .
	touch $@

# what only the tests need (the `test` extra), on top of install
install-test: $(VENV)/.installed-test

$(VENV)/.installed-test: $(VENV)/.installed
	$(PY) -m pip install -q -c constraints.txt -e '.[test]'
	# litellm ships DeepSeek's tokenizer.json (vocab 129,280), a large real vocabulary for the int32 .bin
	# test; its own dependencies are not needed for that
	$(PY) -m pip install -q --no-deps litellm==1.110.2
	touch $@

demo: install
	$(VENV)/bin/snakemake --profile profiles/local --config experiments=[demo,demo-no-python_docs]

test: install-test
	$(PY) -m pytest -v

test-fast: install-test
	$(PY) -m pytest -q -m "not slow and not workflow and not slurm and not gpu"

# graph first, so that a failing config load stops here instead of leaving an empty picture
dag: install
	graph="$$($(VENV)/bin/snakemake --rulegraph)" && printf '%s\n' "$$graph" | dot -Tsvg -o docs/dag.svg

lint: install
	$(VENV)/bin/snakemake --lint

clean-demo:
	rm -rf datapool/experiments/demo datapool/experiments/demo-no-python_docs datapool/reports
