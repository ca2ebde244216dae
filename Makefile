# The two commands of README: `make run` and `make test`. Both do all set-up on a fresh clone.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint bench clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[test]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/biobank-gateway demo --if-empty
	@echo ""
	@echo "FHIR base:        http://127.0.0.1:8080/fhir"
	@echo "SMART discovery:  http://127.0.0.1:8080/fhir/.well-known/smart-configuration"
	@echo "A token to try:   $(BIN)/biobank-gateway token --client \$$($(BIN)/biobank-gateway clients add --name me --kind confidential --audience internal --scopes 'user/*.rs' --redirect-uri http://127.0.0.1/cb | python3 -c 'import json,sys; print(json.load(sys.stdin)[\"client_id\"])') --scopes 'user/*.rs'"
	@echo ""
	$(BIN)/biobank-gateway serve --host 127.0.0.1 --port 8080

test: $(STAMP)
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) data .pytest_cache
