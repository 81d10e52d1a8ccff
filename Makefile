# The two commands: `make run` (the whole stack) and `make test` (the whole suite).
# Only Python >= 3.11 and make are needed; everything else comes from PyPI into .venv.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-$(shell cat requirements.lock pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: run test faults bench lint check install lock clean token

$(STAMP): requirements.lock pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "escalator needs Python >= 3.11"'
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.lock
	@rm -f $(VENV)/.installed-* && touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(PY) devstack.py

# A bearer token for one user of the running `make run` (no environment to export):
# make token USER=ada@demo.escalator.test [TTL=8h]
TTL ?= 8h
token: $(STAMP)
	@$(PY) -m api.tokens --email "$(USER)" --ttl $(TTL)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy .

test: lint
	$(VENV)/bin/pytest $(PYTEST_ARGS)

# Real processes broken on purpose while rungs fire; prints lost, duplicates, lateness,
# recovery per scenario (FAULTS_ITEMS, FAULTS_SMTP_DOWN to vary it).
faults: $(STAMP)
	$(VENV)/bin/pytest -m faults -s -p no:cacheprovider tests/faults

# The 09:00 peak: every figure beside its floor, measured in the same run (BENCH_ARGS to
# pick figures, e.g. BENCH_ARGS="--only 1,4"). Prints a table; JSON in test-artifacts/.
bench: $(STAMP)
	$(PY) -m bench.peak $(BENCH_ARGS)

# Re-pin requirements.lock from pyproject.toml (needs network to PyPI).
lock: $(STAMP)
	$(PY) -m pip install --quiet -e '.[dev]' && $(PY) -m pip freeze --exclude-editable \
		| grep -v -E '^(pip|setuptools|wheel)==' > requirements.lock

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
