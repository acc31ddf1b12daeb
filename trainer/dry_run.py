"""`train.py --dry-run`: show what a config builds (resolved config, parameters per module,
one batch through the model) without training or writing anything."""
import json

import torch

from utils.errors import ConfigError

from .summary import first_batch, model_summary


def _run_config_part(step, section, what, config, data):
    """Run one step of the dry run; a failure names the config section behind it."""
    try:
        return step()
    except Exception as err:  # a model or loss that does not fit the data: report, don't dump
        built_from = config[section]["type"] if isinstance(config[section], dict) else config[section]
        raise ConfigError(
            f"--dry-run: {what} ({section}: {built_from}) failed on one batch of "
            f"data_loader ({config['data_loader']['type']}, input {tuple(data.shape)}): "
            f"{type(err).__name__}: {str(err).strip().splitlines()[0] if str(err).strip() else ''}. "
            f"Make {section} fit the data (its args, or a model made for this input), or pick "
            "another data_loader.") from err


def print_dry_run(config, model, data_loader, criterion, device, optimizer=None):
    print("Resolved config:")
    print(json.dumps(config.config, indent=2))
    data, target = first_batch(data_loader)
    data, target = data.to(device), target.to(device)
    summary = _run_config_part(lambda: model_summary(model, data, optimizer), "arch",
                               "the model", config, data)
    print()
    print("\n".join(summary.lines()))
    model.eval()
    with torch.no_grad():
        output = _run_config_part(lambda: model(data), "arch", "the model", config, data)
        loss = _run_config_part(lambda: criterion(output, target), "loss", "the loss", config, data)
    print("\nOne batch:")
    print(f"    data    {tuple(data.shape)} {data.dtype}")
    print(f"    target  {tuple(target.shape)} {target.dtype}")
    print(f"    output  {tuple(output.shape)} {output.dtype}")
    print(f"    loss    {float(loss):.4f}")
    print(f"\nDry run: {len(data_loader.sampler)} training samples in {len(data_loader)} batches per epoch; "
          "nothing was trained and no run folder was created.")
