"""Hyperparameter search with Optuna (tune.py): the search space, the study and its results."""
