# The two commands: `make demo` (the main job) and `make test`. Each creates .venv and installs
# what it needs on a fresh machine; re-running skips the install while pyproject.toml is unchanged.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
EXTRAS ?= device,media,sim,train,dev
STAMP  := $(VENV)/.installed-$(shell echo $(EXTRAS) | tr ',' '-')

.PHONY: demo test bench venv clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[$(EXTRAS)]'
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/tvrec demo

test: $(STAMP)
	QT_QPA_PLATFORM=offscreen $(PY) -m pytest -q $(PYTEST_ARGS)

# Benchmarks run on demand, never in `make test` (absolute times drift on shared machines).
bench: $(STAMP)
	$(PY) bench/cf_movielens.py

clean:
	rm -rf $(VENV) build *.egg-info
