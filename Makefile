# normae: `make test` and `make reproduce` work on a fresh clone; .venv is built only when missing.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The torch build to install into .venv (this CPU machine serves these two from disk).
TORCH_PACKAGES ?= torch==2.14.1 torchvision==0.29.1
FASHION_MNIST := data/fashion-mnist
RUNS := results/runs
# The workflow's jobs call `normae`: the venv's, whether or not it is activated.
WITH_VENV := PATH="$(CURDIR)/$(BIN):$$PATH"

.PHONY: venv data test test-fast reproduce bench clean

venv: $(BIN)/normae

$(BIN)/normae: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet $(TORCH_PACKAGES)
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

data: $(FASHION_MNIST)/train-images-idx3-ubyte.gz

$(FASHION_MNIST)/train-images-idx3-ubyte.gz: | $(BIN)/normae
	$(BIN)/normae fetch-data fashion-mnist --dest $(FASHION_MNIST)

test: $(BIN)/normae data
	$(WITH_VENV) $(BIN)/python -m pytest -q; status=$$?; \
	if [ $$status -eq 5 ]; then echo "pytest collected no tests: that is a failure" >&2; fi; exit $$status

test-fast: $(BIN)/normae data
	$(WITH_VENV) $(BIN)/python -m pytest -q -m "not slow"

# Every table and figure at the scale config/config.yaml names (tiny: this machine's CPUs), then
# the HTML report. SCALE=gpu or SCALE=paper runs another scale; extra Snakemake options go in ARGS.
reproduce: $(BIN)/normae data
	$(WITH_VENV) $(BIN)/snakemake $(if $(SCALE),--config scale=$(SCALE)) $(ARGS)
	$(WITH_VENV) $(BIN)/snakemake $(if $(SCALE),--config scale=$(SCALE)) --report report.html

bench: $(BIN)/normae
	$(BIN)/normae bench --model vit_tiny --img-size 224 --patch-size 16 --batch-size 16

clean:
	rm -rf results figures report.html
