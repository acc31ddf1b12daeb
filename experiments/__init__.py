"""Many runs: sweeps over a grid of config values (train.py -m), and reading run folders to
list, compare and plot runs (runs.py)."""
