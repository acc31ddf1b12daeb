"""`train.py --dry-run`: show what a config builds (resolved config, the model summary, one
batch through the model and the loss, as the check before every run saw it) without training
or writing anything."""
import json

from .summary import model_summary


def print_dry_run(config, model, data_loader, batch, optimizer=None):
    """`batch`: the BatchCheck of trainer/batch_check.py."""
    print("Resolved config:")
    print(json.dumps(config.config, indent=2))
    print()
    print("\n".join(model_summary(model, batch.data, optimizer).lines()))
    task = getattr(data_loader, "task", None)
    print("\nOne batch:" + (f" (task: {task.kind}, {task.what})" if task is not None else ""))
    print(f"    data    {tuple(batch.data.shape)} {batch.data.dtype}")
    print(f"    target  {tuple(batch.target.shape)} {batch.target.dtype}")
    print(f"    output  {tuple(batch.output.shape)} {batch.output.dtype}")
    print(f"    loss    {float(batch.loss):.4f}")
    print(f"\nDry run: {len(data_loader.sampler)} training samples in {len(data_loader)} batches per epoch; "
          "nothing was trained and no run folder was created.")
