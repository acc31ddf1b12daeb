"""A notebook session with the Python API, as a script: two runs with different overrides, the
better one evaluated on the test split, then predictions for a few digit images. Each "cell"
below can be pasted into a Jupyter notebook started in the project folder.

    python scripts/api_session.py
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the project folder, as in a notebook there

from torchvision.datasets import MNIST  # noqa: E402

from api import evaluate, predict, run  # noqa: E402

# --- cell 1: a run of the quick config, 2 epochs -------------------------------------------------
first = run("configs/mnist_quick.json", overrides={"trainer.epochs": 2})
print(f"first:  {first.status}, best {first.monitor} {first.best_value:.4f} at epoch {first.best_epoch}")
print(f"        run folder {first.run_dir}")
print(first.history[["epoch", "loss", "val_loss", "val_accuracy"]].to_string(index=False))

# --- cell 2: the same with a lower learning rate ------------------------------------------------
second = run("configs/mnist_quick.json", overrides={"trainer.epochs": 2, "optimizer.args.lr": 0.0003})
print(f"second: {second.status}, best {second.monitor} {second.best_value:.4f} at epoch {second.best_epoch}")
print(f"        checkpoints {[path.name for path in second.checkpoints]}")

# --- cell 3: evaluate the better run's best checkpoint on the test split ------------------------
better = min(first, second, key=lambda result: result.best_value)
metrics = evaluate(better.best_checkpoint)
print(f"evaluate({better.best_checkpoint}):")
print({key: round(value, 4) if isinstance(value, float) else value for key, value in metrics.items()})

# --- cell 4: predict the class of a few test digits saved as images ------------------------------
images = Path("saved/api_session_digits")
images.mkdir(parents=True, exist_ok=True)
for index, (image, label) in zip(range(5), MNIST("data/", train=False, download=False)):
    image.save(images / f"{index}_label{label}.png")
table = predict(better.best_checkpoint, images)
print(table[["input", "predicted", "probability"]].to_string(index=False))
