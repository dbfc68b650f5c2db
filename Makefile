# Two commands a user needs:  `make quickstart`  and  `make test` (`make fuzz` explores more).
# Both install what is missing first (idempotent, seconds when up to date).
#
#   make quickstart   the tour; writes runs/quickstart/ (ignored by git), about 30 s on 2 cores
#                     (python -m benchmarks.bench_quickstart measures it: benchmarks/results/quickstart.json)
#   make test         the whole suite in two processes (pytest-xdist, `-n 2`), about 8 minutes on 2 cores
#   make test-fast    the suite without the tests marked or measured slow (tests/durations.json), about 1 minute
#   make reference    regenerate the committed reference results under results/ on purpose
#                     (completed runs are skipped; missing CIFAR-10 runs take hours)
#
#   PYTHON  the interpreter to install into (default: python3)
#   TEST_JOBS  processes of `make test` / `make test-fast` (default 2; 1 runs the suite in one process)
#   TORCH   the torch requirement installed before the package; the default
#           is the CPU wheel. Use TORCH= to keep a torch you already have
#           (for example a CUDA build).
PYTHON ?= python3
TEST_JOBS ?= 2
TORCH  ?= torch==2.13.0
STAMP  := .install-stamp

# The studies whose reference results are committed under results/ (make reference).
REFERENCE_EXPERIMENTS ?= experiments/figure1_spiral.yaml experiments/theorem1_collapse.yaml \
	experiments/recoverability_depth.yaml experiments/toy_linear_bottleneck.yaml \
	experiments/toy_bottleneck_at_scale.yaml experiments/figure6a_linear_bottleneck_cifar10.yaml \
	experiments/figure6b_shortcuts_cifar10.yaml experiments/width_sweep_cifar10.yaml \
	experiments/bottleneck_width_cifar10.yaml experiments/budget_ladder_cifar10.yaml \
	experiments/penalty_location_cifar10.yaml experiments/injective_bottleneck_cifar10.yaml \
	experiments/one_block_penalty_cifar10.yaml experiments/cover_count.yaml experiments/relu_injectivity.yaml \
	experiments/figure6a_converged_subset_cifar10.yaml

.PHONY: install quickstart test test-fast fuzz reference bench clean

$(STAMP): pyproject.toml
	@echo "make: installing what is missing into $(PYTHON) (the first time about 2 minutes: torch is large; then seconds)"
	$(if $(strip $(TORCH)),@echo "make: pip install $(TORCH) (the CPU build unless TORCH says otherwise)")
	$(if $(strip $(TORCH)),$(PYTHON) -m pip install --quiet "$(TORCH)")
	@echo "make: pip install -e .[test] (manifold-lab and its dependencies)"
	$(PYTHON) -m pip install --quiet -e ".[test]"
	@touch $(STAMP)
	@echo "make: installed"

install: $(STAMP)

# QUICKSTART_OUT: another output folder (benchmarks/bench_quickstart.py times a fresh one each repeat)
quickstart: $(STAMP)
	$(PYTHON) -m manifold_lab run experiments/quickstart.yaml $(if $(QUICKSTART_OUT),--out "$(QUICKSTART_OUT)")

# Deterministic: hypothesis examples are derandomized and no example database is kept
# (tests/conftest.py), so `make test` checks the same inputs as CI on every machine, in
# whichever of the TEST_JOBS processes a test lands.
# Timings on a 2-core machine: README.md, "Set-up" (the commands and the dated numbers).
test: $(STAMP)
	$(PYTHON) -m pytest -n $(TEST_JOBS)

# Opt-in exploration: fresh random examples, ten times as many; a failure is kept in
# .hypothesis/ and replayed first by the next `make fuzz`.
fuzz: $(STAMP)
	MANIFOLD_LAB_FUZZ=1 $(PYTHON) -m pytest tests/test_fuzz.py

test-fast: $(STAMP)
	$(PYTHON) -m pytest -m "not slow" -n $(TEST_JOBS)

# The one-block study runs the CPU's part (addendum 1 of its file, --runs 0-48); its other stages wait for a device.
reference: $(STAMP)
	set -e; for spec in $(REFERENCE_EXPERIMENTS); do \
		case $$spec in *one_block_penalty_cifar10.yaml) part="--runs 0-48";; *) part="";; esac; \
		$(PYTHON) -m manifold_lab run $$spec $$part --reference; done
	$(PYTHON) -m manifold_lab spiral --out results/figure1
	$(PYTHON) -m manifold_lab theorem --out results/theorem1
	$(PYTHON) -m manifold_lab models --table3 --out results/table3
	$(PYTHON) -m manifold_lab probe-correlation --out results/probe_penalty_correlation
	set -e; for study in figure6a_linear_bottleneck_cifar10 figure6b_shortcuts_cifar10 penalty_location_cifar10 \
		injective_bottleneck_cifar10; do $(PYTHON) -m manifold_lab.reproduction.figure7 results/$$study; done
	$(PYTHON) -m manifold_lab claims

bench: $(STAMP)
	$(PYTHON) -m benchmarks

clean:
	rm -f $(STAMP)
