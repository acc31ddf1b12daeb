"""Seeding and random-number state that fits in a weights_only checkpoint (plain containers
and tensors only)."""
import random

import numpy as np
import torch


def seed_everything(seed):
    random.seed(seed)
    np.random.seed(seed)  # user code (augmentations) may draw from numpy's global state
    torch.manual_seed(seed)  # also seeds every CUDA device


def worker_init_fn(worker_id):
    """Give each data-loader worker its own python and numpy stream, derived from the torch
    seed that the DataLoader's generator assigned to this worker."""
    worker_seed = torch.initial_seed() % 2**32
    random.seed(worker_seed)
    np.random.seed(worker_seed)


def get_rng_states():
    np_state = np.random.get_state(legacy=False)
    states = {
        "python": _to_lists(random.getstate()),
        "numpy": {
            "bit_generator": np_state["bit_generator"],
            "key": torch.from_numpy(np_state["state"]["key"].astype(np.int64)),
            "pos": int(np_state["state"]["pos"]),
            "has_gauss": int(np_state["has_gauss"]),
            "gauss": float(np_state["gauss"]),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states):
    version, internal, gauss_next = states["python"]
    random.setstate((version, tuple(internal), gauss_next))
    np_state = states["numpy"]
    np.random.set_state({
        "bit_generator": np_state["bit_generator"],
        "state": {"key": np_state["key"].numpy().astype(np.uint32), "pos": np_state["pos"]},
        "has_gauss": np_state["has_gauss"],
        "gauss": np_state["gauss"],
    })
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        cuda_states = states["cuda"][: torch.cuda.device_count()]
        torch.cuda.set_rng_state_all(cuda_states)


def _to_lists(value):
    return [_to_lists(item) for item in value] if isinstance(value, tuple) else value
