# normae: `make test` and `make reproduce` work on a fresh clone; .venv is built only when missing.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Which torch build goes into .venv: this CPU machine serves these two wheels from disk. The version
# constraint itself is pyproject.toml's (torch>=..., torchvision>=...); these pins only pick a build
# inside it. They are installed in the same pip command as the package, so a pin outside pyproject's
# range is a resolver error, never a silent second torch. Elsewhere: make TORCH_PACKAGES= (pip picks
# from pyproject's range) or TORCH_PACKAGES='torch==X torchvision==Y --index-url ...'.
TORCH_PACKAGES ?= torch==2.14.1 torchvision==0.29.1
FASHION_MNIST := data/fashion-mnist
RUNS := results/runs
# The workflow's jobs call `normae`: the venv's, whether or not it is activated.
WITH_VENV := PATH="$(CURDIR)/$(BIN):$$PATH"

.PHONY: venv data lint docs test test-fast reproduce evidence rehearse bench clean

venv: $(BIN)/normae

$(BIN)/normae: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet $(TORCH_PACKAGES) -e '.[workflow,dev]'
	touch $@

data: $(FASHION_MNIST)/train-images-idx3-ubyte.gz

$(FASHION_MNIST)/train-images-idx3-ubyte.gz: | $(BIN)/normae
	$(BIN)/normae fetch-data fashion-mnist --dest $(FASHION_MNIST)

# Every linter runs, even after one fails; the target fails if any did. mypy checks the torch-free
# modules listed under [tool.mypy] files in pyproject.toml. mkdocs builds the documentation (docs/,
# mkdocs.yml) into site/ with --strict, so a broken link or anchor, or a page missing from the nav,
# fails; never add --quiet: mkdocs 1.6 then stops counting warnings and --strict passes anything.
# NO_MKDOCS_2_WARNING silences Material's end-of-life banner, which is not a warning of ours.
lint: $(BIN)/normae
	@status=0; export NO_MKDOCS_2_WARNING=1; \
	for command in "$(BIN)/ruff check normae tests bench" "$(BIN)/ruff format --check normae tests bench" \
	        "$(BIN)/snakefmt --check workflow" "$(BIN)/snakemake --lint" "$(BIN)/mypy" \
	        "$(BIN)/mkdocs build --strict --site-dir site"; do \
	    echo "+ $$command"; $(WITH_VENV) $$command || { echo "FAILED: $$command" >&2; status=1; }; \
	done; exit $$status

# The documentation (docs/, mkdocs.yml) served at http://127.0.0.1:8000, rebuilt on every edit.
docs: $(BIN)/normae
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs serve

test: $(BIN)/normae data
	$(WITH_VENV) $(BIN)/python -m pytest -q; status=$$?; \
	if [ $$status -eq 5 ]; then echo "pytest collected no tests: that is a failure" >&2; fi; exit $$status

# Everything but the tests marked slow or slurm, spread over the machine's cores by pytest-xdist (-n auto; the
# time on this 2-core machine is in docs/measurements.md, "The test suite"). make test runs one process: its
# SLURM tests share the one local cluster.
test-fast: $(BIN)/normae data
	$(WITH_VENV) $(BIN)/python -m pytest -q -n auto -m "not slow and not slurm"; status=$$?; \
	if [ $$status -eq 5 ]; then echo "pytest collected no tests: that is a failure" >&2; fi; exit $$status

# Every table and figure at the scale config/config.yaml names (tiny: this machine's CPUs), then
# the HTML report. SCALE=gpu or SCALE=paper runs another scale; extra Snakemake options go in ARGS.
# ARGS=-n (or --dry-run) stays a dry run end to end: the report, which reads finished runs, is skipped.
DRY_RUN := $(filter -n --dry-run --dryrun,$(ARGS))
reproduce: $(BIN)/normae data
	$(WITH_VENV) $(BIN)/snakemake $(if $(SCALE),--config scale=$(SCALE)) $(ARGS)
	$(if $(DRY_RUN),@echo "dry run ($(DRY_RUN)): no report",$(WITH_VENV) $(BIN)/snakemake $(if $(SCALE),--config scale=$(SCALE)) --report report.html)

# The answer so far (README "Does NoR-MAE beat MAE?"): the cpu scale's evidence tables and figures on all of
# Fashion-MNIST: one epoch, 5 seeds (evidence), and five epochs, 3 seeds, scored by k-NN and fine-tuning
# (evidence_long); about 3 hours on 2 cores (69 min + 2 h, docs/measurements.md). Then their own report,
# report-evidence.html, which leads with them. ARGS=-n stays a dry run, as for reproduce.
EVIDENCE := evidence evidence_long --config scale=cpu --cores 2
evidence: $(BIN)/normae data
	$(WITH_VENV) $(BIN)/snakemake $(EVIDENCE) $(ARGS)
	$(if $(DRY_RUN),@echo "dry run ($(DRY_RUN)): no report",$(WITH_VENV) $(BIN)/snakemake $(EVIDENCE) --report report-evidence.html)

# The dress rehearsal of the paper scale: generated data in the real on-disk formats (ImageNet's 1000
# wnids, the eight torchvision layouts), then the whole paper-scale DAG through the local SLURM cluster
# and the profile a user types, every run cut to one step (config/rehearsal.yaml). Everything goes
# under $(REHEARSAL)/ (its results/, figures/, report.html); tables say REHEARSAL.
REHEARSAL := rehearsal
rehearse: $(BIN)/normae
	sinfo -h >/dev/null 2>&1 || .ci/start-slurm
	rm -rf $(REHEARSAL) && mkdir -p $(REHEARSAL)
	$(BIN)/normae rehearsal-data --out $(REHEARSAL)/data --config-out $(REHEARSAL)/data.yaml > $(REHEARSAL)/data.flow
	for name in workflow config slurm; do ln -s ../$$name $(REHEARSAL)/$$name; done
	cd $(REHEARSAL) && time $(WITH_VENV) snakemake --profile slurm \
	    --config scale=paper rehearsal=true "data=$$(cat data.flow)" $(ARGS)
	$(if $(DRY_RUN),@echo "dry run ($(DRY_RUN)): no report",cd $(REHEARSAL) && $(WITH_VENV) snakemake --profile slurm \
	    --config scale=paper rehearsal=true "data=$$(cat data.flow)" --report report.html)

bench: $(BIN)/normae
	$(BIN)/normae bench --model vit_tiny --img-size 224 --patch-size 16 --batch-size 16 --steps 10 --warmup 2 --methods mae,nor_mae

clean:
	rm -rf results figures report.html report-evidence.html site $(REHEARSAL)
