# Quantum Trader — two commands: `make run` and `make test`.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed

.PHONY: install run test lint typecheck check clean compose-check security

install: $(STAMP)

$(STAMP): requirements/base.txt requirements/dev.txt
	@test -x $(PY) || python3.11 -m venv $(VENV) || python3 -m venv $(VENV)
	$(PIP) install --quiet --disable-pip-version-check -r requirements/dev.txt
	@touch $(STAMP)

run: install
	$(PY) manage.py runplatform $(RUN_ARGS)

# The embedded default (SQLite + private Redis) unless DATABASE_URL/REDIS_URL are set.
# Coverage of the apps is reported on every run (pyproject [tool.coverage]); CI adds
# COV_ARGS=--cov-fail-under=80 so a drop below 80% fails the build.
test: install
	QT_REDIS_SOCKET=var/redis-test.sock $(PY) -m pytest --cov --cov-report=term:skip-covered $(COV_ARGS) $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: install
	$(VENV)/bin/mypy .

check: lint typecheck
	$(PY) manage.py makemigrations --check --dry-run

compose-check:
	docker-compose config -q
	docker-compose --profile monitoring config -q

# bandit (config and justified skips: pyproject [tool.bandit]); pip-audit runs in .ci/run.
security: install
	$(VENV)/bin/bandit -c pyproject.toml -q -r quantum marketdata trading risk models_registry venues benchmarks

clean:
	rm -rf var/*.sqlite3* var/artifacts var/*.sock var/*.rdb
