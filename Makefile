# Two commands for a fresh Linux machine (Python 3.11 with venv, make):
#   make demo   install, then run the notebook end to end (offline profile with no GPU or Hub)
#   make test   install, then run the test suite
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: install demo test lint figures notebook clean

$(BIN)/.installed: requirements.txt requirements-dev.txt
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements-dev.txt
	$(BIN)/pip install -q --no-deps -e .
	touch $@

install: $(BIN)/.installed

demo: install
	mkdir -p outputs
	$(BIN)/papermill QLoRA_BERT_TextClassification.ipynb outputs/QLoRA_BERT_TextClassification.executed.ipynb \
		-p PROFILE auto --cwd . --log-output

test: install
	$(BIN)/python -m pytest -q tests

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

figures: install
	$(BIN)/python -m benchmarks.run figures

notebook: install
	$(BIN)/python tools/build_notebook.py

clean:
	rm -rf outputs .pytest_cache
