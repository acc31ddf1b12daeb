"""What a checkpoint keeps of the model and the optimizer, and how a checkpoint is written and
read back: whole tensors in a .pth file (one process, DataParallel, DDP), or every process's
shards in a .dcp folder (FSDP, see utils/dcp.py). Either kind resumes under any strategy and
any number of processes."""
import torch

from run.checkpoints import FILE, SHARDED
from utils import dist, unwrap_model
from utils.checkpoint import Key, check_weights_fit, load_weights, split_optimizer_state, strip_module_prefix
from utils.dcp import OPTIMIZER_TENSORS, WEIGHTS, ShardedWeights, load_tensors, saved_tensors, write_checkpoint_dir
from utils.io import atomic_link_or_save

from . import fsdp


def checkpoint_suffix(model):
    """.dcp for a sharded model, .pth otherwise."""
    return SHARDED if fsdp.is_sharded(model) else FILE


def model_state(model):
    return fsdp.sharded_weights(model) if fsdp.is_sharded(model) else unwrap_model(model).state_dict()


def optimizer_state(model, optimizer):
    return fsdp.sharded_optimizer_state(model, optimizer) if fsdp.is_sharded(model) else optimizer.state_dict()


def load_model_state(model, weights, source):
    """`weights`: a checkpoint's "state_dict", whole tensors or ShardedWeights; `source` names it."""
    if not fsdp.is_sharded(model):
        load_weights(unwrap_model(model), weights, source)  # reads ShardedWeights whole
        return
    check_weights_fit(unwrap_model(model).state_dict(), weights, source)
    if isinstance(weights, ShardedWeights):
        fsdp.load_sharded_weights(model, lambda template: load_tensors({WEIGHTS: template}, weights.path))
    else:
        fsdp.load_whole_weights(model, strip_module_prefix(weights))


def load_optimizer_state(model, optimizer, state, checkpoint):
    """`state`: a checkpoint's "optimizer" (for a .dcp folder its plain part; the tensors are read
    from the folder)."""
    weights = checkpoint[Key.STATE_DICT]
    if not fsdp.is_sharded(model):
        optimizer.load_state_dict(state)
    elif isinstance(weights, ShardedWeights):
        saved = set(saved_tensors(weights.path, OPTIMIZER_TENSORS))
        fsdp.load_sharded_optimizer(model, optimizer, state, saved_names=saved, tensors_from=lambda template:
                                    load_tensors({OPTIMIZER_TENSORS: template}, weights.path))
    else:
        fsdp.load_whole_optimizer(model, optimizer, state)


def write_checkpoint(model, state, path, same_as=None):
    """Write `state` (from every registered part) to `path`: a .pth file by rank 0, or a .dcp
    folder by all processes together. `same_as`: a checkpoint already holding this state."""
    if not fsdp.is_sharded(model):
        if dist.is_main_process():  # DDP: every rank holds the same state; one writes it
            atomic_link_or_save(state, path, same_as)
        return
    optimizer_tensors, optimizer_plain = split_optimizer_state(state[Key.OPTIMIZER])
    tensors = {WEIGHTS: state[Key.STATE_DICT], OPTIMIZER_TENSORS: optimizer_tensors}
    plain = {key: value for key, value in state.items() if key != Key.STATE_DICT}
    plain.update({Key.OPTIMIZER: optimizer_plain, Key.TORCH_VERSION: str(torch.__version__)})
    write_checkpoint_dir(path, tensors, plain, same_as)
