"""Each program imports only what its command line and config use: --help answers before torch
is imported, and building a run imports no optional library the config does not use. Checked in
a fresh interpreter (this one has everything loaded); no timing is asserted."""
import json
import subprocess
import sys

import numpy as np
from PIL import Image

from conftest import PROJECT_ROOT, script_env, tiny_config

# top-level packages that only some configs or commands use
OPTIONAL = ("torch", "torchvision", "pandas", "sklearn", "scipy", "matplotlib", "torchmetrics", "optuna",
            "tensorboard", "mlflow", "wandb")
# about a second to import; a training run gets them through torch (its optimizer imports torch._dynamo)
SHARDING = ("torch.distributed.fsdp", "torch.distributed.checkpoint")
PROBE = """
import json, runpy, sys
command_lines, packages, loaded = json.loads(sys.argv[1]), json.loads(sys.argv[2]), {}
for argv in command_lines:
    sys.argv = argv
    try:
        runpy.run_path(argv[0], run_name="__main__")
    except SystemExit as stop:
        assert stop.code in (0, None), (argv, stop.code)
    loaded[" ".join(argv)] = sorted(name for name in packages if name in sys.modules)
print(json.dumps(loaded))
"""


def imported_after(*command_lines, packages=OPTIONAL):
    """{command line: the `packages` loaded once it has run}; the command lines run one after
    the other in one fresh interpreter, as `python <command line>`."""
    argv = [list(map(str, line)) for line in command_lines]
    result = subprocess.run([sys.executable, "-c", PROBE, json.dumps(argv), json.dumps(packages)],
                            cwd=PROJECT_ROOT, env=script_env(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.splitlines()[-1])


def test_help_of_each_program_answers_before_torch_is_imported():
    loaded = imported_after(["train.py", "--help"], ["test.py", "--help"], ["predict.py", "--help"])
    assert loaded == {"train.py --help": [], "test.py --help": [], "predict.py --help": []}


def test_building_a_run_imports_only_the_libraries_its_config_uses(tmp_path, mnist_dir):
    """A table without a stratified split, then MNIST with LeNet, in one interpreter."""
    table = tmp_path / "table.csv"
    table.write_text("x,y,label\n" + "".join(f"{i},{i % 3},{'ab'[i % 2]}\n" for i in range(40)))
    table_config = json.loads((PROJECT_ROOT / "configs" / "wine_csv.json").read_text())
    table_config["arch"]["args"].update(num_inputs=2, num_classes=2)
    table_config["data_loader"]["args"] = {"csv_file": str(table), "target": "label", "batch_size": 8,
                                           "validation_split": 0.25}
    table_config["trainer"]["save_dir"] = str(tmp_path / "saved")
    table_path = tmp_path / "table.json"
    table_path.write_text(json.dumps(table_config))
    mnist_path = tiny_config(tmp_path, mnist_dir)
    after_table, after_mnist = imported_after(["train.py", "-c", table_path, "--dry-run"],
                                              ["train.py", "-c", mnist_path, "--dry-run"]).values()
    assert after_table == ["pandas", "torch"]  # no torchvision, no scikit-learn, no matplotlib
    assert sorted(set(after_mnist) - set(after_table)) == ["torchvision"]  # its MNIST dataset


def test_predicting_and_listing_runs_import_no_sharding_code(finished_run, tmp_path):
    image = tmp_path / "digit.png"
    Image.fromarray(np.zeros((28, 28), dtype=np.uint8)).save(image)
    predict = ["predict.py", "-r", finished_run / "model_best.pth", "-i", image, "-o", tmp_path / "p.csv"]
    loaded = imported_after(predict, ["runs.py", tmp_path / "saved"], packages=SHARDING)
    assert list(loaded.values()) == [[], []]
