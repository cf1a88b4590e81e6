# Two commands for a fresh Linux machine (Python 3.11 with venv, make):
#   make demo   install, then run the notebook end to end (offline profile with no GPU or Hub)
#   make test   install, then run the test suite
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: install demo test lint figures notebook clean

$(BIN)/.installed: requirements.txt requirements-dev.txt requirements-tune.txt requirements-export.txt
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements-dev.txt
	$(BIN)/pip install -q --no-deps -e .
	touch $@

install: $(BIN)/.installed

demo: install
	mkdir -p outputs
	$(BIN)/python -m benchmarks.timed demo --metrics outputs/demo/metrics.json \
		--notebook outputs/QLoRA_BERT_TextClassification.executed.ipynb -- \
		$(BIN)/papermill QLoRA_BERT_TextClassification.ipynb outputs/QLoRA_BERT_TextClassification.executed.ipynb \
		-p PROFILE auto -p OUTPUT_DIR outputs/demo --cwd . --log-output

test: install
	$(BIN)/python -m pytest -q tests

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

figures: install
	$(BIN)/python -m benchmarks.run figures

notebook: install  # the .ipynb is written from its jupytext source; edit the .py, then run this
	$(BIN)/jupytext --to ipynb --output QLoRA_BERT_TextClassification.ipynb notebook/QLoRA_BERT_TextClassification.py

clean:
	rm -rf outputs .pytest_cache
