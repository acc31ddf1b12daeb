"""`train.py --dry-run`: show what a config builds (resolved config, parameters per module,
one batch through the model) without training or writing anything."""
import json

import torch

from model.transfer import parameter_table


def print_dry_run(config, model, data_loader, criterion, device):
    print("Resolved config:")
    print(json.dumps(config.config, indent=2))
    print("\nModel parameters:")
    print("\n".join(parameter_table(model)))
    data, target = next(iter(data_loader))
    data, target = data.to(device), target.to(device)
    model.eval()
    with torch.no_grad():
        output = model(data)
        loss = criterion(output, target)
    print("\nOne batch:")
    print(f"    data    {tuple(data.shape)} {data.dtype}")
    print(f"    target  {tuple(target.shape)} {target.dtype}")
    print(f"    output  {tuple(output.shape)} {output.dtype}")
    print(f"    loss    {float(loss):.4f}")
    print(f"\nDry run: {len(data_loader.sampler)} training samples in {len(data_loader)} batches per epoch; "
          "nothing was trained and no run folder was created.")
