# Two commands a user needs:  `make quickstart`  and  `make test` (`make fuzz` explores more).
# Both install what is missing first (idempotent, seconds when up to date).
#
#   PYTHON  the interpreter to install into (default: python3)
#   TORCH   the torch requirement installed before the package; the default
#           is the CPU wheel. Use TORCH= to keep a torch you already have
#           (for example a CUDA build).
PYTHON ?= python3
TORCH  ?= torch==2.13.0
STAMP  := .install-stamp

.PHONY: install quickstart test fuzz bench clean

$(STAMP): pyproject.toml
	$(if $(strip $(TORCH)),$(PYTHON) -m pip install --quiet "$(TORCH)")
	$(PYTHON) -m pip install --quiet -e ".[test]"
	@touch $(STAMP)

install: $(STAMP)

quickstart: $(STAMP)
	$(PYTHON) -m manifold_lab run experiments/quickstart.yaml

# Deterministic: hypothesis examples are derandomized and no example database is kept
# (tests/conftest.py), so `make test` checks the same inputs as CI on every machine.
test: $(STAMP)
	$(PYTHON) -m pytest

# Opt-in exploration: fresh random examples, ten times as many; a failure is kept in
# .hypothesis/ and replayed first by the next `make fuzz`.
fuzz: $(STAMP)
	MANIFOLD_LAB_FUZZ=1 $(PYTHON) -m pytest tests/test_fuzz.py

bench: $(STAMP)
	$(PYTHON) -m benchmarks

clean:
	rm -f $(STAMP)
