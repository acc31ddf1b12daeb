PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# extra arguments for train.py / pytest: make train ARGS="-o trainer.epochs=5", make test ARGS="-k resume"
ARGS ?=

.PHONY: venv train test lint clean

$(BIN)/activate: requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip
	$(BIN)/pip install -r requirements-dev.txt
	touch $(BIN)/activate

venv: $(BIN)/activate

train: venv
	$(BIN)/python train.py -c config.json $(ARGS)

test: venv
	$(BIN)/python -m pytest -q $(ARGS)

lint: venv
	$(BIN)/ruff check .

clean:
	rm -rf saved .pytest_cache .ruff_cache
