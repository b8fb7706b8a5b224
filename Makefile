# normae: `make test` and `make reproduce` work on a fresh clone; .venv is built only when missing.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The torch build to install into .venv (this CPU machine serves these two from disk).
TORCH_PACKAGES ?= torch==2.14.1 torchvision==0.29.1
FASHION_MNIST := data/fashion-mnist
RUNS := results/runs
# The CPU-scale pre-training shared by MAE and NoR-MAE in `make reproduce` (a few minutes on 2 cores).
TINY_PRETRAIN := --dataset fashion_mnist --model vit_micro --patch-size 2 --train-samples 2048 \
	--epochs 3 --warmup-epochs 1 --batch-size 64 --blr 1e-3 --num-workers 0 --log-every 8

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
	$(BIN)/python -m pytest -q; status=$$?; \
	if [ $$status -eq 5 ]; then echo "pytest collected no tests: that is a failure" >&2; fi; exit $$status

test-fast: $(BIN)/normae data
	$(BIN)/python -m pytest -q -m "not slow"

reproduce: $(BIN)/normae data
	$(BIN)/normae pretrain $(TINY_PRETRAIN) --method mae --out $(RUNS)/tiny-mae --resume
	$(BIN)/normae pretrain $(TINY_PRETRAIN) --method nor_mae --out $(RUNS)/tiny-nor_mae --resume
	$(BIN)/normae summarize $(RUNS)/tiny-mae $(RUNS)/tiny-nor_mae

bench: $(BIN)/normae
	$(BIN)/normae bench --model vit_tiny --img-size 224 --patch-size 16 --batch-size 16

clean:
	rm -rf $(RUNS)
