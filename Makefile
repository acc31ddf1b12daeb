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
	$(BIN)/pip install --no-compile -r requirements.txt
	# the extras (litdata above all) may ask pip for another torch build: keep the torch and
	# torchvision that requirements.txt just installed, pinned in the same install command
	$(BIN)/pip freeze | grep -iE '^(torch|torchvision)==' > $(VENV)/torch-pins.txt
	$(BIN)/pip install --no-compile -r requirements-dev.txt -c $(VENV)/torch-pins.txt
	# pip compiles on one core; compiled here on all of them (without .pyc files every import
	# of torch is slower). torch/testing/_internal/py312_intrinsics.py parses only on Python 3.12+
	$(BIN)/python -m compileall -q -j 0 -x py312_intrinsics $(VENV)/lib > /dev/null
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
