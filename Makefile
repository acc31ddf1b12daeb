PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# extra arguments for train.py / pytest: make train ARGS="-o trainer.epochs=5", make test ARGS="-k resume"
ARGS =
# parallel test processes (pytest-xdist): one per core; make test WORKERS=0 runs them in this process.
# loadgroup: the tests marked xdist_group("name") run in one worker, sharing their module fixtures
WORKERS = auto
PARALLEL = -n $(WORKERS) --dist loadgroup

.PHONY: venv train test test-slow lint clean

$(BIN)/activate: requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip
	$(BIN)/pip install -r requirements-dev.txt
	touch $(BIN)/activate

venv: $(BIN)/activate

train: venv
	$(BIN)/python train.py -c config.json $(ARGS)

# the suite in two tiers: `test` (about 2 minutes on 2 cores) and `test-slow` (about 10), the long
# end-to-end runs (every documented command, torchrun launches, signals and kills to processes)
test: venv
	$(BIN)/python -m pytest -q -m "not slow" $(PARALLEL) $(ARGS)

test-slow: venv
	$(BIN)/python -m pytest -q -m slow $(PARALLEL) $(ARGS)

lint: venv
	$(BIN)/ruff check .

clean:
	rm -rf saved .pytest_cache .ruff_cache
