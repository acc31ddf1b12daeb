"""ShardDataLoader: batches streamed from LitData shards (data_loader/shard_format.py) on a local
disk or in object storage, so the data never has to fit in memory.

Order: each epoch shuffles the order of the chunks, the blocks of 256 samples within each chunk
and the samples within each block, seeded by (seed, epoch); under DDP the ranks take disjoint
chunk ranges of the same order, and every rank gets the same number of full batches (the last
global batch's remainder is left out of that epoch). The loader keeps its position:
`state_dict()` goes into every checkpoint, and a run resumed inside an epoch continues with
exactly the batches the stopped run had left, also with another number of processes (the rest
of the epoch is shared out again).
"""
import copy
import logging

import numpy as np
import torch
from torch.utils.data.dataloader import default_collate

from utils import ConfigError, dist

from .batch_augment import BatchAugment
from .shard_format import (
    OPTIMIZE_COMMAND,
    allow_plain_http_endpoint,
    check_local_chunks,
    is_remote,
    read_manifest,
    require_litdata,
    split_location,
)
from .table import input_size
from .task import TargetScaling, Task
from .transforms import normalize_values, pipeline, transform_steps

logger = logging.getLogger("data_loader")
# Within a chunk, blocks of this many consecutive samples are shuffled, then the samples in each
# block: neighbours are read from the same stretch of the file. (The writer shuffled them once.)
SHUFFLE_BLOCK = 256
# what may go on to torch's DataLoader; workers start anew each epoch (persistent_workers no)
PASSED_ON = ("pin_memory", "pin_memory_device", "timeout", "prefetch_factor", "multiprocessing_context")


class SampleCount:
    """len() is the number of samples this process sees per epoch (as len(loader.sampler))."""

    def __init__(self, count):
        self.count = count

    def __len__(self):
        return self.count


class ShardDataLoader:
    """Training batches from the shards at `input_dir` (a folder, or an s3:// or gs:// URL
    with `cache_dir` and `max_cache_gb` for the downloaded chunks), written by
    `python -m data_loader.optimize`; validation from their val/ split, test.py from test/.
    Transforms, normalisation, limit and on_bad_sample work as for the image folder loader;
    class names, image mode and size come from the shards' manifest. See docs/data.md."""

    def __init__(self, input_dir: str, batch_size: int = 64, shuffle: bool = True, num_workers: int = 0,
                 training: bool = True, validation_split: float | None = None, cache_dir: str | None = None,
                 max_cache_gb: float | None = None, transforms: dict | None = None,
                 normalize: str | dict | None = "auto", mode: str | None = None, image_size: int | list | None = None,
                 class_names: list | None = None, preprocessing: dict | None = None, task: str | None = None,
                 target_scaling: dict | None = None, on_bad_sample: str = "error", limit: int = 0,
                 seed: int | None = None, **loader_kwargs):
        require_litdata()
        logging.getLogger("litdata").setLevel(logging.WARNING)  # its info lines are about its own workings
        self.loader_kwargs = _passed_on(loader_kwargs, num_workers)
        if validation_split:
            raise ConfigError("data_loader.args.validation_split: ShardDataLoader validates on the val/ split written "
                              "with the shards. Set validation_split in the config the shards are written from.")
        self.input_dir, self.manifest = str(input_dir), read_manifest(input_dir)
        if is_remote(input_dir):
            allow_plain_http_endpoint()
        _check_fits(self.manifest, self.input_dir, {"mode": mode, "image_size": image_size, "class_names": class_names,
                                                    "preprocessing": preprocessing, "task": task,
                                                    "target_scaling": target_scaling}, on_bad_sample)
        self.batch_size, self.num_workers, self.training = batch_size, num_workers, training
        self.seed = (torch.initial_seed() if seed is None else seed) % 2**32  # LitData takes 32-bit seeds
        self.class_names = list(self.manifest["class_names"])
        scaling = TargetScaling.from_record(self.manifest["target_scaling"])
        self.task = Task(self.manifest["task"], tuple(self.class_names), scaling)
        self.target_scaling = scaling
        self.skipped_samples = [tuple(sample) for sample in self.manifest["skipped"]]
        self.storage = {"cache_dir": cache_dir, "max_cache_size": f"{max_cache_gb}GB" if max_cache_gb else None}
        self.fitted_args = {"task": self.task.kind, "class_names": self.class_names, "mode": self.manifest["mode"],
                            "image_size": self.manifest["image_size"]}
        if scaling is not None:
            self.fitted_args["target_scaling"] = scaling.record()
        self.normalize = self._resolve_normalize(normalize)
        self.finish, train_tf, eval_tf = self._pipelines(transforms, training)
        self.eval_transform = eval_tf
        split = "train" if training else "test"
        self.dataset, self.loader = self._split_loader(split, shuffle and training, training, train_tf, limit)
        self.length = len(self.loader)
        self.sampler = SampleCount(self.length * batch_size if training else len(self.dataset))
        self.epoch, self.skip_batches, self.batches_done = 1, 0, 0
        self.epoch_samples = self.length * batch_size * dist.world_size()
        self.resume_state = None
        preprocessing = self.manifest["preprocessing"]
        self.num_inputs = input_size(preprocessing) if preprocessing else None  # a table's model inputs
        logger.info(f"Shards '{self.input_dir}': {self.sampler.count} {split} samples per epoch in this process, "
                    f"{len(self.class_names)} classes.")

    # ---- set-up --------------------------------------------------------------------------------
    def _resolve_normalize(self, normalize):
        if self.manifest["kind"] == "table":
            if self.manifest["preprocessing"]:
                self.fitted_args["preprocessing"] = self.manifest["preprocessing"]
            return None  # rows were standardised when they were written
        if normalize != "auto":
            return normalize_values(normalize)
        stats = self.manifest["normalize"]
        self.fitted_args["normalize"] = stats
        return stats["mean"], stats["std"]

    def _pipelines(self, transforms, training):
        """(BatchFinish, per-sample training transform or None, per-sample eval transform or None)."""
        if self.manifest["kind"] == "table":
            return BatchFinish(None, None, self.seed), None, None
        train_steps = transform_steps(transforms, "train" if training else "eval")
        eval_steps = transform_steps(transforms, "eval")
        size = self.manifest["image_size"]
        augment, reason = BatchAugment.from_steps(train_steps, tuple(size)) if size else \
            (None, "the images differ in size")
        if augment is not None and eval_steps:
            augment, reason = None, "the eval transforms are not empty"
        if augment is not None:
            logger.info("Shards: transforms and normalisation run on whole batches.")
            return BatchFinish(self.normalize, augment if training and train_steps else None, self.seed), None, None
        logger.info(f"Shards: per-sample transforms in the loader's workers ({reason}).")
        return BatchFinish(None, None, self.seed), pipeline(train_steps, self.normalize), \
            pipeline(eval_steps, self.normalize)

    def _split_loader(self, split, shuffle, training, transform, limit=0):
        """(ShardDataset, LitData StreamingDataLoader) of one split."""
        from litdata import StreamingDataLoader

        from .shard_dataset import ShardDataset

        if split not in self.manifest["splits"]:
            raise ConfigError(_missing_split_message(split, self.input_dir))
        location = split_location(self.input_dir, split)
        if not is_remote(location):
            check_local_chunks(location, split)
        # training: every rank gets the same number of full batches (DDP steps in lockstep);
        # evaluation: every sample exactly once over the ranks
        with _quiet_litdata():
            decode = {key: self.manifest[key] for key in ("kind", "mode", "image_size")}
            dataset = ShardDataset(location, decode,
                                   transform, self.seed, shuffle=shuffle, drop_last=training, seed=self.seed,
                                   item_shuffle_window=SHUFFLE_BLOCK, **self.storage)
        if limit and limit < self.manifest["splits"][split]["count"]:
            count = self.manifest["splits"][split]["count"]
            dataset = dataset.subset(np.sort(np.random.default_rng(self.seed).permutation(count)[:limit]).tolist())
        # its own generator: creating an iterator draws a worker seed from it, not from the global RNG
        loader = StreamingDataLoader(dataset, batch_size=self.batch_size, num_workers=self.num_workers,
                                     collate_fn=default_collate, generator=torch.Generator(), **self.loader_kwargs)
        return dataset, loader

    def split_validation(self):
        """The val/ split's batches (never augmented), or None when the shards have none."""
        if not self.training or "val" not in self.manifest["splits"]:
            return None
        dataset, loader = self._split_loader("val", False, False, self.eval_transform)
        return EvalBatches(loader, dataset, self.finish, self.batch_size, self.input_dir)

    # ---- one epoch -----------------------------------------------------------------------------
    def set_epoch(self, epoch, skip_batches=0):
        """The next iteration yields epoch `epoch`'s batches after the first `skip_batches`."""
        self.epoch, self.skip_batches = epoch, skip_batches

    def __len__(self):
        return self.length

    def __iter__(self):
        epoch, skip = self.epoch, self.skip_batches
        self.dataset.draw_epoch = epoch
        state = self._state_for(epoch, skip)
        if state is not None:
            self.loader.load_state_dict(copy.deepcopy(state["litdata"]))
            self.epoch_samples = state["epoch_samples"]
        else:
            self.loader.restore = False  # a fresh epoch, numbered as the trainer numbers it
            self.loader.current_epoch = epoch - 1
            self.epoch_samples = self.length * self.batch_size * dist.world_size()
        self.batches_done = skip
        number = skip
        for batch in _read(self.loader, self.dataset.location(), self.input_dir,
                           skip_first=0 if state is not None else skip):
            self.batches_done = number + 1  # counted before the trainer sees it: a checkpoint taken then includes it
            yield self.finish(batch, number, epoch)
            number += 1

    def _state_for(self, epoch, skip):
        """The loaded LitData state when resuming epoch `epoch` after `skip` batches."""
        state, self.resume_state = self.resume_state, None
        if not skip or state is None or state["litdata"] is None:
            if skip:
                logger.info(f"Shards: no loader state for epoch {epoch}; reading its first {skip} batches again "
                            "to skip them.")
            return None
        if state["epoch"] != epoch:
            raise RuntimeError(f"the loader state is of epoch {state['epoch']}, not {epoch}")
        return state

    # ---- checkpoint state ----------------------------------------------------------------------
    def state_dict(self):
        """Plain data: where this epoch stands. Every rank's is the same (lockstep batches)."""
        inside = 0 < self.batches_done < self.length
        return {"epoch": self.epoch, "batches_done": self.batches_done, "world_size": dist.world_size(),
                "batch_size": self.batch_size, "num_workers": self.num_workers, "epoch_samples": self.epoch_samples,
                "shards_id": self.manifest["shards_id"],
                "litdata": copy.deepcopy(self.loader.state_dict()) if inside else None}

    def load_state_dict(self, state):
        if state and state.get("litdata") is not None and state["shards_id"] != self.manifest["shards_id"]:
            raise ConfigError(f"the checkpoint was saved inside an epoch of other shards than those at "
                              f"data_loader.args.input_dir '{self.input_dir}' (their manifest's shards_id differs): "
                              "resuming inside an epoch needs the same shards. Point input_dir at the shards the run "
                              "used, or resume from a checkpoint saved at an epoch's end.")
        self.resume_state = state

    def resume_batches(self, batches_done):
        """The batch of this process's epoch to resume after, for a checkpoint saved after
        `batches_done` batches per process: the same number, unless the number of processes,
        the batch size or the workers changed; then the batches this process has left (the rest
        of the epoch, shared out again) counted back from the end of its epoch. Samples that do
        not fill a batch for every worker of every process are left out of that rest."""
        state = self.resume_state
        if not batches_done or not state or state.get("litdata") is None:
            return batches_done
        dataset_state = state["litdata"]["dataset"]
        same = (state["world_size"], state["batch_size"], state["num_workers"]) == \
            (dist.world_size(), self.batch_size, self.num_workers)
        if same:
            return batches_done
        global_batch = self.batch_size * dist.world_size()
        # LitData restarts a changed grid after the last full global batch seen, and shares out
        # the rest in whole batches for every worker of every rank
        done = dataset_state["sample_in_epoch"] // global_batch * global_batch
        every_worker = global_batch * max(1, self.num_workers)
        left = (state["epoch_samples"] - done) // every_worker * every_worker // global_batch
        return max(1, self.length - left)


class EvalBatches:
    """Validation or test batches of one split, in the same order every pass."""

    def __init__(self, loader, dataset, finish, batch_size, input_dir):
        self.loader, self.dataset, self.finish, self.batch_size = loader, dataset, finish, batch_size
        self.input_dir = input_dir
        self.sampler = SampleCount(len(dataset))

    def __len__(self):
        return len(self.loader)

    def __iter__(self):
        self.loader.restore = False
        for number, batch in enumerate(_read(self.loader, self.dataset.location(), self.input_dir)):
            yield self.finish(batch, number, 0, augment=False)


class BatchFinish:
    """What runs on each batch in the main process: uint8 images to floats in [0, 1], the batched
    augmentation (its random draws seeded by (seed, epoch, batch, rank)) and normalisation.
    Batches that the workers transformed sample by sample pass unchanged."""

    def __init__(self, normalize, augment, seed):
        self.augment, self.seed = augment, seed
        self.mean, self.std = (None, None) if normalize is None else \
            (torch.tensor(normalize[0]).view(-1, 1, 1), torch.tensor(normalize[1]).view(-1, 1, 1))

    def __call__(self, batch, number, epoch, augment=True):
        data, target = batch
        if data.dtype != torch.uint8:
            return data, target
        data = data.float().div_(255)
        if augment and self.augment is not None:
            seed = hash((self.seed, epoch, number, dist.rank())) % 2**63  # int tuples hash alike in every process
            data = self.augment(data, torch.Generator().manual_seed(seed))
        if self.mean is not None:
            data = data.sub_(self.mean).div_(self.std)
        return data, target


def _read(loader, location, input_dir, skip_first=0):
    """The loader's batches (after dropping `skip_first`); an error while reading becomes a
    ShardReadError that names the split's shards, without the worker's traceback."""
    from .shard_dataset import ShardReadError

    iterator = iter(loader)
    while True:
        try:
            batch = next(iterator)
        except StopIteration:
            return
        except ShardReadError:
            raise
        except Exception as err:  # LitData, the storage clients and torch's workers raise many types
            network = "if the network dropped, wait for it; " if is_remote(location) else ""
            raise ShardReadError(f"reading the shards in '{location}' failed ({_last_line(err)}): {network}if a "
                                 "shard file there is damaged or was changed, copy the shards again or write them "
                                 f"again ({OPTIMIZE_COMMAND.format(out=input_dir)} --overwrite). A run's "
                                 "checkpoints stay usable: resume it with python train.py -r <its run folder>") \
                from None
        if skip_first:
            skip_first -= 1
            continue
        yield batch


def _last_line(err):
    """A worker's error arrives with its traceback in the message: keep the error's own line."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return lines[-1][:300] if lines else type(err).__name__


class _quiet_litdata:  # noqa: N801 (used like a function)
    """LitData warns about drop_last off under DDP: that is what evaluation wants."""

    def __enter__(self):
        self.logger = logging.getLogger("litdata.streaming.dataset")
        self.level = self.logger.level
        self.logger.setLevel(logging.ERROR)

    def __exit__(self, *exc):
        self.logger.setLevel(self.level)


def _passed_on(loader_kwargs, num_workers):
    unknown = [key for key in loader_kwargs if key not in PASSED_ON]
    if unknown:
        raise ConfigError(f"data_loader.args.{unknown[0]} is not an argument of ShardDataLoader (torch DataLoader "
                          f"arguments it passes on: {', '.join(PASSED_ON)}).")
    if num_workers == 0:
        return {key: value for key, value in loader_kwargs.items() if key not in ("prefetch_factor", "timeout")}
    return dict(loader_kwargs)


def _check_fits(manifest, input_dir, recorded, on_bad_sample):
    """What a run recorded in its config (for test.py and resuming), or a config sets, against
    what the shards at `input_dir` hold; `recorded` maps argument names to values or None."""
    size = recorded["image_size"]
    recorded = {**recorded, "image_size": [size, size] if isinstance(size, int) else size}
    for key, given in recorded.items():
        held = manifest[key]
        if given is not None and (list(given) if isinstance(given, tuple) else given) != held:
            raise ConfigError(f"data_loader.args.{key} is {given!r}, but the shards at '{input_dir}' hold {held!r} "
                              "(written from other data, or written again since). Point input_dir at the shards of "
                              f"this run's data, or leave {key} out to use the shards' own; to write them: "
                              f"{OPTIMIZE_COMMAND.format(out=input_dir)}")
    if on_bad_sample not in ("error", "skip"):
        raise ConfigError(f'data_loader.args.on_bad_sample is {on_bad_sample!r}; use "error" or "skip".')
    if manifest["skipped"] and on_bad_sample == "error":
        first = "; ".join(f"{sample}: {problem}" for sample, problem in manifest["skipped"][:3])
        raise ConfigError(f"the shards at '{input_dir}' were written without {len(manifest['skipped'])} bad "
                          f"sample(s) ({first}). Set data_loader.args.on_bad_sample to \"skip\" to train without "
                          "them, or fix them and write the shards again: "
                          f"{OPTIMIZE_COMMAND.format(out=input_dir)} --overwrite")


def _missing_split_message(split, input_dir):
    source = {"test": "test data (test_dir, test_csv, or a torchvision dataset's test split)",
              "train": "training data", "val": "a validation split"}[split]
    return (f"the shards at data_loader.args.input_dir '{input_dir}' have no {split}/ split: the config they were "
            f"written from had no {source}. Add it to that config and write the shards again: "
            f"{OPTIMIZE_COMMAND.format(out=input_dir)} --overwrite")
