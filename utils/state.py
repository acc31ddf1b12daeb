"""The stateful parts of a run, by checkpoint key: a checkpoint is gathered from them, and a
resume hands each part its own piece. The trainer registers the model, optimizer, scheduler,
monitor, early stopping and random-number states; more parts (an EMA model, callbacks) register
themselves the same way:

    trainer.state_parts.register("ema", ema_model)              # has state_dict/load_state_dict
    trainer.state_parts.register("counter", save=lambda: n, load=lambda value, checkpoint: ...)
"""


class StateParts:
    def __init__(self):
        self._parts = {}  # key -> (save, load)

    def register(self, key, part=None, *, save=None, load=None):
        """Add `part` (an object with state_dict()/load_state_dict()), or a `save()` returning
        plain containers and tensors and a `load(value, checkpoint)`. A key is registered once."""
        if key in self._parts:
            raise ValueError(f"checkpoint key '{key}' is registered twice")
        if part is not None:
            save, load = part.state_dict, lambda value, checkpoint: part.load_state_dict(value)
        if save is None or load is None:
            raise ValueError(f"checkpoint key '{key}' needs a part, or both save and load")
        self._parts[key] = (save, load)

    def __contains__(self, key):
        return key in self._parts

    def state(self):
        """{key: saved state} of every part, in registration order."""
        return {key: save() for key, (save, _) in self._parts.items()}

    def load(self, checkpoint, skip=()):
        """Give each part its piece of `checkpoint`, in registration order. Parts whose key the
        checkpoint lacks (an older file) or that are in `skip` keep their current state."""
        for key, (_, load) in self._parts.items():
            if key in checkpoint and key not in skip:
                load(checkpoint[key], checkpoint)
