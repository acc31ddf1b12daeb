"""What the built-in loaders (image folders, CSV tables, torchvision datasets) share: limit,
bad samples, the split, "auto" normalisation, the transforms of each split, class weights, and
the choice between the in-memory fast path and the per-sample path."""
import logging
import os
import sys
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Subset
from torch.utils.data.dataloader import default_collate
from tqdm import tqdm

from data_loader.in_memory import InMemoryData, InMemoryDataLoader
from data_loader.splits import balanced_class_weights, split_indices
from utils import ConfigError

from .decode_cache import decoded_images
from .samples import ImageFiles, SeededDraws, TensorSamples, Transformed, decode_all
from .task import TargetScaling, Task, class_index
from .transforms import measure_normalize, normalize_values, pipeline, transform_steps

logger = logging.getLogger("data_loader")
BAD_SAMPLE_POLICIES = ("error", "skip")
DEFAULT_MEMORY_SHARE = 0.25  # of the machine's RAM, when memory_budget_gb is not given
NORMALIZE_SAMPLE = 2000  # images measured for "auto" normalisation on the per-sample path


@dataclass
class SampleSet:
    """The samples of one loader before any transform. `samples` yields (uint8 image C x H x W,
    or float row, class index); `fixed_valid` marks samples of an explicit validation set."""
    samples: object
    labels: np.ndarray
    class_names: list
    fixed_valid: np.ndarray | None = None
    skipped: list = field(default_factory=list)  # (file or row, problem)
    task: Task | None = None  # None: classification of `class_names`

    def subset(self, keep):
        keep = np.asarray(keep, dtype=np.int64)
        if hasattr(self.samples, "subset"):
            samples = self.samples.subset(keep)
        elif isinstance(self.samples, TensorSamples):
            samples = TensorSamples(self.samples.data[keep], self.samples.targets[keep])
        else:
            samples = Subset(self.samples, keep.tolist())
        fixed = None if self.fixed_valid is None else self.fixed_valid[keep]
        return SampleSet(samples, self.labels[keep], self.class_names, fixed, self.skipped, self.task)


class SampleDataLoader(InMemoryDataLoader):
    """Batches of a SampleSet: the fast in-memory path when it fits, else per sample."""

    def __init__(self, sample_set, batch_size, shuffle=True, validation_split=0.0, num_workers=0,
                 training=True, seed=None, limit=0, transforms=None, normalize=None, in_memory="auto",
                 memory_budget_gb=None, cache_dir=None, data_device=None, stratify=False, n_folds=0,
                 fold=0, class_weights=None, weighted_sampler=False, on_bad_sample="error",
                 collate_fn=default_collate, target_scaling="auto", **loader_kwargs):
        _check_choice("on_bad_sample", on_bad_sample, BAD_SAMPLE_POLICIES)
        _check_choice("in_memory", in_memory, (True, False, "auto"))
        _check_choice("class_weights", class_weights, (None, "balanced"))
        seed = torch.initial_seed() if seed is None else seed
        if limit:
            keep = np.sort(np.random.default_rng(seed).permutation(len(sample_set.labels))[:limit])
            sample_set = sample_set.subset(keep)
        self.class_names = [str(name) for name in sample_set.class_names]
        self.task = sample_set.task or Task("classification", tuple(self.class_names))
        _check_class_settings(self.task, stratify, class_weights, weighted_sampler)
        fast, cached, problems = self._load(sample_set, in_memory, memory_budget_gb, cache_dir, num_workers,
                                            on_bad_sample)
        sample_set = self._drop_bad(sample_set, problems, on_bad_sample)  # `cached` holds the good ones
        self.skipped_samples = sample_set.skipped
        self.source = sample_set.samples  # what the samples were read from (report rows)
        classes = class_index(sample_set.labels, self.task.kind)
        if training:
            self._split = self._fixed_or_drawn_split(sample_set, classes, validation_split, seed, stratify, n_folds,
                                                     fold)
        else:
            self._split = (np.arange(len(sample_set.labels)), np.arange(0))
        train_idx = self._split[0]
        self.fitted_args = {"task": self.task.kind}
        labels = self._scaled_targets(sample_set.labels, train_idx, target_scaling, training)
        if _is_table(sample_set.samples):
            cached = sample_set.samples.tensor(train_idx)
            self.fitted_args["preprocessing"] = sample_set.samples.preprocessing
        self.normalize = self._resolve_normalize(normalize, sample_set, cached, train_idx, training)
        self.class_weights = None
        if class_weights == "balanced" and training:
            self.class_weights = torch.tensor(balanced_class_weights(classes[train_idx], len(self.class_names)),
                                              dtype=torch.float32)
        train_steps = transform_steps(transforms, "train" if training else "eval")
        eval_steps = transform_steps(transforms, "eval")
        cache, fast = self._fast_path(fast, cached, labels, train_steps, eval_steps)
        targets = torch.tensor(np.asarray(labels))
        raw = TensorSamples(cached, targets) if cached is not None else sample_set.samples
        is_image = cached is None or cached.dtype == torch.uint8
        train_tf = pipeline(train_steps, self.normalize) if is_image else None
        eval_tf = pipeline(eval_steps, self.normalize) if is_image else None
        self.seeded_draws = not fast and train_tf is not None  # see _train_sampler
        super().__init__(Transformed(raw, train_tf, targets), batch_size, shuffle, validation_split, num_workers,
                         collate_fn, seed, in_memory=fast, data_device=data_device, cache=cache,
                         eval_dataset=Transformed(raw, eval_tf, targets), labels=classes,
                         weighted_sampler=weighted_sampler and training, **loader_kwargs)

    def describe_samples(self, indices):
        """The samples at `indices` as their files hold them: a DataFrame whose "input" column
        names each one as predict.py does (an image path, or "<file> line <N>" followed by the
        row's columns); None for samples without a file."""
        if _is_table(self.source):
            return self.source.source_rows(indices)
        if isinstance(self.source, ImageFiles):
            return pd.DataFrame({"input": [self.source.paths[int(i)] for i in indices]})
        return None

    # ---- decoding ----------------------------------------------------------------------------
    def _load(self, sample_set, in_memory, budget_gb, cache_dir, num_workers, on_bad_sample):
        """(use the fast path, decoded tensor or None, {index: problem})."""
        samples = sample_set.samples
        if isinstance(samples, TensorSamples):  # torchvision tensors: already in memory
            return in_memory is not False, samples.data, {}
        if _is_table(samples):  # turned into a tensor once the training rows are known
            return in_memory is not False, None, samples.problems
        fits, reason = _fits(samples, in_memory, budget_gb)
        if fits and not isinstance(samples, ImageFiles):  # a torchvision dataset's own images
            decoded = [samples[i][0] for i in tqdm(range(len(samples)), desc="decoding", disable=None, leave=False)]
            if len({tuple(t.shape) for t in decoded}) == 1:
                return True, torch.stack(decoded), {}
            fits, reason = False, "the images differ in size; set data_loader.args.image_size"
        if fits:
            images, problems = decoded_images(samples, cache_dir, num_workers)
            if images is not None:
                return True, images, problems
            reason = "the images differ in size; set data_loader.args.image_size to decode them all alike"
        logger.info(f"Per-sample data path: {reason}.")
        # skip: find the bad files now, not in the middle of an epoch
        if on_bad_sample == "skip" and isinstance(samples, ImageFiles):
            _, _, problems = decode_all(samples, num_workers, keep_tensors=False)
            return False, None, problems
        return False, None, {}

    @staticmethod
    def _drop_bad(sample_set, problems, on_bad_sample):
        if not problems:
            return sample_set
        first = sorted(problems)[:3]
        listed = "; ".join(problems[i] for i in first)
        if on_bad_sample == "error":
            raise ConfigError(f"{len(problems)} bad sample(s): {listed}{' ...' if len(problems) > 3 else ''}. "
                              'Fix or remove them, or set data_loader.args.on_bad_sample to "skip" to '
                              "train without them.")
        if len(problems) == len(sample_set.labels):
            raise ConfigError(f"all {len(problems)} sample(s) are bad, none is left to use: {listed}"
                              f"{' ...' if len(problems) > 3 else ''}. Fix them.")
        keep = np.array([i for i in range(len(sample_set.labels)) if i not in problems], dtype=np.int64)
        skipped = [(_describe(sample_set.samples, i), problems[i]) for i in sorted(problems)]
        logger.warning(f"Skipped {len(problems)} bad sample(s) (on_bad_sample is \"skip\"): {listed}"
                       f"{' ...' if len(problems) > 3 else ''}")
        reduced = sample_set.subset(keep)
        reduced.skipped = sample_set.skipped + skipped
        return reduced

    # ---- split, normalisation, transforms -----------------------------------------------------
    def _fixed_or_drawn_split(self, sample_set, classes, validation_split, seed, stratify, n_folds, fold):
        if sample_set.fixed_valid is not None and sample_set.fixed_valid.any():
            if n_folds:
                raise ConfigError("data_loader.args.n_folds splits the training data, but a separate "
                                  "validation set (val_dir / val_csv) is given too. Use one of them.")
            return np.flatnonzero(~sample_set.fixed_valid), np.flatnonzero(sample_set.fixed_valid)
        return split_indices(len(sample_set.labels), validation_split, seed, classes, stratify, n_folds, fold)

    def _scaled_targets(self, targets, train_idx, target_scaling, training):
        """Regression targets standardised with `target_scaling` ("auto": the training split's
        mean and std per column, recorded in fitted_args; a recorded dict; None: as they are)."""
        self.target_scaling = None
        if self.task.kind != "regression":
            return targets
        if target_scaling is None:
            self.fitted_args["target_scaling"] = None
            return targets
        if target_scaling == "auto":
            if not training:
                raise ConfigError("data_loader.args.target_scaling is \"auto\" for test data, which must be scaled "
                                  "with the training data's numbers. Test a checkpoint (its config holds them), or "
                                  "write them: {\"mean\": [...], \"scale\": [...]}.")
            scaling = TargetScaling.fit(targets[train_idx])
        else:
            scaling = TargetScaling.from_record(target_scaling)
            if len(scaling.mean) != targets.shape[1]:
                raise ConfigError(f"data_loader.args.target_scaling holds {len(scaling.mean)} mean(s), but there "
                                  f"are {targets.shape[1]} target column(s). Leave it \"auto\" for a new run.")
        self.target_scaling = scaling
        self.task = Task(self.task.kind, self.task.names, scaling)
        self.fitted_args["target_scaling"] = scaling.record()
        return scaling.standardise(targets).astype(np.float32)

    def split_indices(self, split):
        return self._split

    def _train_sampler(self, train_idx, shard):
        """On the per-sample path, each index comes with the seed of its transform's random draws."""
        sampler = super()._train_sampler(train_idx, shard)
        return SeededDraws(sampler, self.seed) if self.seeded_draws else sampler

    def _resolve_normalize(self, normalize, sample_set, cached, train_idx, training):
        """(mean, std) lists, measured on the training split for "auto"; recorded in fitted_args."""
        if cached is not None and cached.dtype != torch.uint8:
            return None  # tables are standardised by their own preprocessing
        if normalize != "auto":
            return normalize_values(normalize)
        if not training:
            return normalize_values(normalize)  # raises: test data must use the training numbers
        if cached is not None:
            stats = measure_normalize(cached[torch.as_tensor(train_idx)])
        else:
            chosen = np.random.default_rng(0).permutation(train_idx)[:NORMALIZE_SAMPLE]
            stats = measure_normalize(torch.stack([sample_set.samples[int(i)][0] for i in np.sort(chosen)]))
        logger.info(f"normalize \"auto\": mean {stats['mean']}, std {stats['std']} (training split)")
        self.fitted_args["normalize"] = stats
        return stats["mean"], stats["std"]

    def _fast_path(self, fast, cached, labels, train_steps, eval_steps):
        """(InMemoryData or None, whether batches are gathered from memory)."""
        if not fast:
            return None, False
        targets = torch.tensor(np.asarray(labels))
        if cached.dtype != torch.uint8:
            return InMemoryData(cached, targets), True
        from .batch_augment import BatchAugment  # torchvision: image data only

        augment, reason = BatchAugment.from_steps(train_steps, tuple(cached.shape[2:]))
        if augment is not None and eval_steps:
            augment, reason = None, "the eval transforms are not empty"
        if augment is None:
            logger.info(f"In memory, with per-sample transforms: {reason}.")
            return None, False
        mean, std = self.normalize if self.normalize is not None else (None, None)
        how = "batched augmentation" if train_steps else "no augmentation"
        logger.info(f"In memory: {len(cached)} samples, {cached.numel() / 2**20:.1f} MiB; {how}.")
        return InMemoryData(cached, targets, mean, std, augment if train_steps else None), True


def _fits(samples, in_memory, budget_gb):
    """(decode everything into memory, why not)."""
    if in_memory is False:
        return False, "data_loader.args.in_memory is false"
    n_bytes = _decoded_bytes(samples)
    budget = budget_gb * 2**30 if budget_gb is not None else \
        DEFAULT_MEMORY_SHARE * os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    if in_memory is True or n_bytes <= budget:
        return True, None
    return False, (f"the decoded images need about {n_bytes / 2**30:.1f} GiB, over the memory budget of "
                   f"{budget / 2**30:.1f} GiB (data_loader.args.memory_budget_gb)")


def _decoded_bytes(samples):
    """Size of all decoded images, from the first one that decodes."""
    for index in range(min(len(samples), 20)):
        try:
            return samples[index][0].numel() * len(samples)
        except ConfigError:
            continue
    return 0


def _describe(samples, index):
    return samples.describe(index) if hasattr(samples, "describe") else f"sample {index}"


def _check_class_settings(task, stratify, class_weights, weighted_sampler):
    """Settings that count classes, refused for targets that are not one class per sample."""
    needs_classes = {"stratify": stratify and task.kind not in ("classification", "binary"),
                     "weighted_sampler": weighted_sampler and task.kind not in ("classification", "binary"),
                     "class_weights": class_weights is not None and task.kind != "classification"}
    for key, refused in needs_classes.items():
        if refused:
            raise ConfigError(f"data_loader.args.{key} balances classes, but the task is {task.kind}, whose "
                              f"targets are not one class per sample. Remove {key}"
                              + (" (for a binary task, weight the positive class with loss.args.pos_weight)."
                                 if task.kind == "binary" else "."))


def _check_choice(key, value, allowed):
    def matches(option):  # true is not 1, and "auto" is not True
        if isinstance(option, bool) or option is None:
            return value is option
        return not isinstance(value, bool) and value == option

    if not any(matches(option) for option in allowed):
        raise ConfigError(f"data_loader.args.{key} is {value!r}; use one of "
                          f"{', '.join(repr(a) for a in allowed)}.")


def _is_table(samples):
    """True for TableRows. Only the table loaders import data_loader.table (and pandas): without
    it, no sample set can be one."""
    table = sys.modules.get("data_loader.table")
    return table is not None and isinstance(samples, table.TableRows)
