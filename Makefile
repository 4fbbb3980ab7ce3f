# The two commands: `make demo` and `make test`. Both create .venv when it is missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast fuzz lint bench bench-full soak clean

$(STAMP): pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,postgres,predict]'
	touch $(STAMP)

# At 10:00 today, store time: the shipped quiet hours (21:00-08:00) hold mail only for customers
# whose night it is, as they would for a shop sending in the morning.
# A demo.db from an earlier version is brought to this one's schema first (retain db upgrade).
demo: $(STAMP)
	@[ ! -f demo.db ] || $(BIN)/retain --config config.yaml --db sqlite:///demo.db db upgrade
	$(BIN)/retain --config config.yaml --db sqlite:///demo.db demo --as-of "$$(date +%F)T10:00"

# The browser tests (tests/browser) drive Debian's chromium: installed here when missing.
test: $(STAMP)
	scripts/install-browser.sh
	scripts/with-postgres.sh $(BIN)/python -m pytest -q

# The suite without the tests marked slow (subprocesses, kills, thousands of emails): for the edit loop.
test-fast: $(STAMP)
	scripts/with-postgres.sh $(BIN)/python -m pytest -q -m 'not slow'

# The property-based tests of hostile input (tests/fuzz/), 3,000 examples each (about ten minutes);
# `make test` runs them briefly. Failures are kept and replayed first next time.
fuzz: $(STAMP)
	RETAIN_FUZZ_PROFILE=long scripts/with-postgres.sh $(BIN)/python -m pytest -q tests/fuzz \
		-W ignore::hypothesis.errors.HypothesisWarning --hypothesis-show-statistics

# Style, and the layers contract of README "How it is built" (pyproject.toml [tool.importlinter]).
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/lint-imports --no-cache

# Quick figures on generated data (each script takes flags for full-size runs; see its docstring).
bench: $(STAMP)
	$(BIN)/python bench/segments.py --customers 100000
	$(BIN)/python bench/scale.py --sizes 10000 --folder bench
	$(BIN)/python bench/runmemory.py --sizes 10000
	$(BIN)/python bench/import.py --rows 200000
	$(BIN)/python bench/render.py --emails 2000 --repeat 1
	$(BIN)/python bench/smtp.py --messages 1000 --repeat 1
	$(BIN)/python bench/pipeline.py --customers 5000
	$(BIN)/python bench/sources.py
	$(BIN)/python bench/predict.py --customers 100000
	$(BIN)/python bench/cdnow.py
	$(BIN)/python bench/report.py

# README "Performance": the full-size figures (under two hours on a 2-core machine;
# see README). One throwaway PostgreSQL server for all of them (scripts/with-postgres.sh).
bench-full: $(STAMP)
	scripts/with-postgres.sh sh -c '\
	  $(BIN)/python bench/scale.py --postgres "$$RETAIN_TEST_POSTGRES_URL" && \
	  $(BIN)/python bench/report.py --customers 1000000 --postgres "$$RETAIN_TEST_POSTGRES_URL" && \
	  $(BIN)/python bench/import.py --rows 10000000 --customers 1000000 --items 1 && \
	  $(BIN)/python bench/import.py --rows 10000000 --customers 1000000 --items 1 \
	    --db "$$RETAIN_TEST_POSTGRES_URL" && \
	  $(BIN)/python bench/sources.py --deliveries 100000 --sql-rows 1000000 && \
	  $(BIN)/python bench/render.py --emails 20000 --repeat 1 && \
	  $(BIN)/python bench/pipeline.py --customers 20000 && \
	  $(BIN)/python bench/runmemory.py --sizes 10000,100000 && \
	  $(BIN)/python bench/workers.py --messages 20000 --latency-workers 1,2,4,8'

soak: $(STAMP)
	$(BIN)/python bench/soak.py

clean:
	rm -rf $(VENV) demo.db outbox report.html artifacts .pytest_cache bench/*.db
