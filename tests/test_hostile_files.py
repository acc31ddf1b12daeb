"""Hostile and malformed files, one example each: decompression bombs in a class folder (with
on_bad_sample "error" and "skip") and among predict.py's inputs, a read that never ends, named
pipes, and the defects the fuzz tests (tests/test_fuzz_*.py) found, kept as regression cases."""
import json
import os
import re
import time
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from test_bad_data import folder_config
from test_fuzz_images import png_header_bomb
from test_fuzz_predict import onnx_files  # noqa: F401 (a fixture)

import data_loader.samples as samples
import utils.bounded_read as bounded_read
from config.schema import DEFAULT_MAX_IMAGE_PIXELS
from config.sources import read_config_file
from conftest import only_run, tiny_config
from data_loader.data_loaders import CsvDataLoader, ImageFolderDataLoader
from data_loader.file_limits import FileLimits
from data_loader.samples import BadSample, decode_image
from model.model import MnistModel
from reliability_helpers import load, run_in_process, run_train_in_process
from scripts.make_digits_folder import write_digits_folder
from utils import ConfigError

BOMB_SIDE = 15000  # 225 megapixels in a 100-byte file, like the 27 KB PNG of the reported attack


@pytest.fixture
def digits_with_a_bomb(tmp_path):
    root = tmp_path / "digits"
    write_digits_folder(root, test_fraction=0.5, per_class=15)
    bomb = root / "train" / "3" / "bomb.png"
    bomb.write_bytes(png_header_bomb(BOMB_SIDE, BOMB_SIDE))
    return root, bomb


def test_a_bomb_in_a_class_folder_stops_train_py_naming_it_and_leaves_no_run(digits_with_a_bomb, tmp_path,
                                                                             monkeypatch, capsys):
    root, bomb = digits_with_a_bomb
    code, output = run_train_in_process(monkeypatch, capsys, "-c", folder_config(tmp_path, root))
    assert code == 2 and "Traceback" not in output.err
    assert f"image file '{bomb}' has 225,000,000 pixels, over data_loader.args.max_image_pixels" in output.err
    assert not (tmp_path / "saved").exists()


def test_a_bomb_is_skipped_and_listed_with_on_bad_sample_skip(digits_with_a_bomb, tmp_path, monkeypatch, capsys):
    root, bomb = digits_with_a_bomb
    oddly_named = bomb.rename(bomb.with_name("bo\tmb\n.png"))  # one line per sample all the same
    config = folder_config(tmp_path, root, on_bad_sample="skip")
    assert run_train_in_process(monkeypatch, capsys, "-c", config)[0] == 0
    listed = (only_run(tmp_path / "saved") / "skipped_samples.txt").read_text().splitlines()
    assert [line.split("\t")[0] for line in listed] == [str(oddly_named).replace("\t", "\\t").replace("\n", "\\n")]
    assert "225,000,000 pixels" in listed[0]


def test_predict_names_a_bomb_in_its_errors_csv(tmp_path, mnist_dir, monkeypatch, capsys):
    checkpoint = tmp_path / "model.pth"
    config = json.loads(tiny_config(tmp_path, mnist_dir).read_text())
    torch.save({"arch": "MnistModel", "epoch": 1, "state_dict": MnistModel().state_dict(), "config": config},
               checkpoint)
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    Image.fromarray(np.zeros((28, 28), dtype=np.uint8)).save(inputs / "digit.png")
    (inputs / "bomb.png").write_bytes(png_header_bomb(BOMB_SIDE, BOMB_SIDE))
    code, _ = run_in_process(monkeypatch, capsys, "predict", "-r", checkpoint, "-i", inputs, "-o",
                             tmp_path / "out.csv", "--num-workers", "0")
    errors = pd.read_csv(tmp_path / "out_errors.csv")
    assert code == 0 and list(errors["input"]) == [str(inputs / "bomb.png")]
    assert "225,000,000 pixels" in errors["reason"][0]
    assert list(pd.read_csv(tmp_path / "out.csv")["input"]) == [str(inputs / "digit.png")]


def test_an_image_above_the_limit_is_refused_from_its_header_and_pil_is_left_alone(tmp_path):
    big = tmp_path / "big.png"
    big.write_bytes(png_header_bomb(12000, 12000))  # over PIL's warning limit, under its error limit
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(BadSample, match=r"12000x12000 = 144,000,000 pixels, over .*max_image_pixels"):
            decode_image(big, "L", None)
    assert caught == [] and Image.MAX_IMAGE_PIXELS == DEFAULT_MAX_IMAGE_PIXELS
    real = tmp_path / "real.png"
    Image.new("L", (200, 200)).save(real)
    with pytest.raises(BadSample, match=r"200x200 = 40,000 pixels"):
        decode_image(real, "L", None, FileLimits(max_image_pixels=39_999))
    assert decode_image(real, "L", None, FileLimits(max_image_pixels=40_000)).shape == (1, 200, 200)


def never_ending_read_of(path_to_hang, original=bounded_read._read):
    def read(path, max_bytes, progress):
        if str(path) == str(path_to_hang):
            time.sleep(3600)  # a hung network mount: the read never returns
        return original(path, max_bytes, progress)
    return read


def test_the_decode_pool_gives_up_on_a_read_that_never_ends_and_names_the_file(tmp_path, monkeypatch):
    root = tmp_path / "digits"
    write_digits_folder(root, test_fraction=0.5, per_class=3)
    hung = sorted((root / "train" / "4").glob("*.png"))[0]
    monkeypatch.setattr(bounded_read, "_read", never_ending_read_of(hung))  # forked pool workers inherit it
    monkeypatch.setattr(samples, "DECODE_CHUNK", 8)  # several chunks, so a process pool decodes them
    started = time.monotonic()
    # a read is given up after a whole 1 s without new bytes: a busy test machine delays a real read far less
    loader = ImageFolderDataLoader(train_dir=str(root / "train"), mode="L", num_workers=2, in_memory=True,
                                   on_bad_sample="skip", read_timeout_s=1, cache_dir=str(tmp_path / "cache"))
    assert time.monotonic() - started < 60
    assert [path for path, _ in loader.skipped_samples] == [str(hung)]
    assert "delivered no data for 1 s" in loader.skipped_samples[0][1]
    assert not (tmp_path / "cache").exists()  # a file that timed out may read fine next time: nothing cached
    with pytest.raises(ConfigError, match="delivered no data"):  # the per-sample path, read in this process
        for _ in ImageFolderDataLoader(train_dir=str(root / "train"), mode="L", in_memory=False, normalize=None,
                                       read_timeout_s=1):
            pass


def test_named_pipes_are_refused_at_once(tmp_path, monkeypatch, capsys):
    fifo = tmp_path / "config.json"
    os.mkfifo(fifo)
    code, output = run_train_in_process(monkeypatch, capsys, "-c", fifo)
    assert code == 2 and f"config file '{fifo}' cannot be read: it is a named pipe" in output.err
    os.mkfifo(tmp_path / "pipe.png")
    Image.new("L", (8, 8)).save(tmp_path / "good.png")
    (tmp_path / "images.csv").write_text("image,label\ngood.png,0\npipe.png,1\ngood.png,1\n")
    loader = CsvDataLoader(csv_file=str(tmp_path / "images.csv"), target="label", image_column="image", mode="L",
                           on_bad_sample="skip", normalize=None)
    assert [path for path, _ in loader.skipped_samples] == [str(tmp_path / "pipe.png")]


def test_a_bad_image_read_in_a_loader_worker_is_named_without_a_traceback(tmp_path):
    root = tmp_path / "digits"
    write_digits_folder(root, test_fraction=0.5, per_class=3)
    bad = sorted((root / "train" / "2").glob("*.png"))[0]
    bad.write_bytes(b"junk")
    loader = ImageFolderDataLoader(train_dir=str(root / "train"), mode="L", in_memory=False, normalize=None,
                                   num_workers=1, batch_size=64)
    with pytest.raises(BadSample) as err:
        next(iter(loader))
    assert str(err.value).startswith(f"image file '{bad}' cannot be read") and "Traceback" not in str(err.value)


@pytest.mark.parametrize("content, problem", [
    (b'{"name": "caf\xe9"}', "is not UTF-8 text: byte 0xe9 at line 1, column 14"),
    (b'{"name": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "cannot be used: maximum recursion depth"),
    (b'{"name": "x", "seed": ' + b"7" * 5000 + b"}", "cannot be used: Exceeds the limit (4300 digits)"),
    (b'{"name": "' + b"x" * (1 << 20) + b'"}', "cannot be read: it is 1,048,588 bytes, over the limit of 1,048,576"),
])
def test_a_config_file_that_crashed_the_reader_is_named(tmp_path, content, problem):
    path = tmp_path / "config.json"
    path.write_bytes(content)
    with pytest.raises(ConfigError) as err:
        read_config_file(path)
    assert str(err.value).startswith(f"config file '{path}' {problem}")


def test_a_config_file_with_a_byte_order_mark_is_read(tmp_path):
    path = tmp_path / "config.json"
    path.write_bytes(b'\xef\xbb\xbf{"name": "Tiny"}')
    assert read_config_file(path) == {"name": "Tiny"}


@pytest.mark.parametrize("text, bad_line", [
    ("x,label\n1,0\n\n2,1\n,0\n3,1\n", 5),  # a blank line before the bad row
    ('x,note,label\n1,"a\nb",0\n,c,1\n2,d,1\n', 4),  # a quoted line break before it
    ("x,label\n1,0\n2,1,9\n3,1\n4,0\n", 3),  # a ragged row: a bad row, not a file that cannot be read
])
def test_csv_problems_name_the_true_line_and_can_be_skipped(tmp_path, text, bad_line):
    path = tmp_path / "table.csv"
    path.write_text(text)
    args = {"csv_file": str(path), "target": "label", "categorical": ["note"] if "note" in text else None}
    with pytest.raises(ConfigError, match=f"'{path}' line {bad_line}: "):
        CsvDataLoader(**args)
    skipping = CsvDataLoader(**args, on_bad_sample="skip")
    assert [origin for origin, _ in skipping.skipped_samples] == [f"'{path}' line {bad_line}"]


@pytest.mark.parametrize("text, problem", [
    ("x,label\n", "has a header row but no data rows"),
    ("x,label\n,0\n1,\n", "all 2 sample(s) are bad"),
])
def test_a_table_without_a_usable_row_is_named(tmp_path, text, problem):
    path = tmp_path / "table.csv"
    path.write_text(text)
    with pytest.raises(ConfigError, match=re.escape(problem)) as err:
        CsvDataLoader(csv_file=str(path), target="label", on_bad_sample="skip")
    assert str(path) in str(err.value)


def test_predict_output_keeps_an_input_name_holding_a_line_break(tmp_path):
    import predict

    names = ["plain.png", "carriage\rreturn.png", "line\nfeed.png", 'quote",comma.png']
    predict.write_csv(tmp_path / "out.csv", ["input", "reason"], [{"input": n, "reason": "x"} for n in names])
    assert list(pd.read_csv(tmp_path / "out.csv", keep_default_na=False)["input"]) == names


@pytest.mark.parametrize("damage, culprit", [
    (lambda model, sidecar: (model[:len(model) // 2], sidecar), "model.onnx' cannot be loaded"),
    (lambda model, sidecar: (model, sidecar[:-3]), "model.onnx.json' is not valid JSON"),
    (lambda model, sidecar: (model, sidecar.replace(b'"MnistDataLoader"', b'"Nothing"')),
     "model.onnx.json': its data_loader section cannot rebuild the input pipeline"),
    (lambda model, sidecar: (model, sidecar.replace(b'"batch"', b'false')), "model.onnx.json' is not one export.py"),
    (lambda model, sidecar: (model, sidecar.replace(b'"batch"', b'10000000')),  # padded to 31 GB on every call
     "model.onnx.json' is not one export.py"),
    (lambda model, sidecar: (model, sidecar.replace(b'"multiclass"', b'"lulticlass"')),
     "model.onnx.json': its task keys (task, class_names, target_names, target_scaling) cannot be used"),
])
def test_a_damaged_onnx_model_or_sidecar_is_named(tmp_path, onnx_files, monkeypatch, capsys, damage,  # noqa: F811
                                                  culprit):
    model, sidecar = damage(*onnx_files)
    (tmp_path / "model.onnx").write_bytes(model)
    (tmp_path / "model.onnx.json").write_bytes(sidecar)
    Image.new("L", (28, 28)).save(tmp_path / "digit.png")
    code, output = run_in_process(monkeypatch, capsys, "predict", "-m", tmp_path / "model.onnx", "-i",
                                  tmp_path / "digit.png", "-o", tmp_path / "out.csv")
    assert code == 2 and "Traceback" not in output.err and f"{tmp_path}/{culprit}" in output.err
    assert not (tmp_path / "out.csv").exists()


def test_predict_names_the_checkpoint_whose_stored_config_is_damaged(tmp_path, mnist_dir, monkeypatch, capsys):
    config = json.loads(tiny_config(tmp_path, mnist_dir).read_text())
    config["mr_scheduler"] = config.pop("lr_scheduler")  # one flipped bit in the pickled config
    checkpoint = tmp_path / "model.pth"
    torch.save({"arch": "MnistModel", "epoch": 1, "state_dict": MnistModel().state_dict(), "config": config},
               checkpoint)
    Image.new("L", (28, 28)).save(tmp_path / "digit.png")
    code, output = run_in_process(monkeypatch, capsys, "predict", "-r", checkpoint, "-i", tmp_path / "digit.png",
                                  "-o", tmp_path / "out.csv")
    assert code == 2 and f"the config stored in checkpoint '{checkpoint}' cannot be used" in output.err
    assert "mr_scheduler" in output.err and not (tmp_path / "out.csv").exists()


@pytest.mark.parametrize("overrides", [["+data_loader.type=[]"], ["data_loader.type={}", "data_loader.args.limit=1"],
                                       ["+metrics=true"]])
def test_a_value_of_an_unexpected_json_type_is_named(tmp_path, mnist_dir, monkeypatch, capsys, overrides):
    argv = ["-c", tiny_config(tmp_path, mnist_dir)] + [part for text in overrides for part in ("-o", text)]
    code, output = run_train_in_process(monkeypatch, capsys, *argv)
    assert code == 2 and "Traceback" not in output.err
    assert overrides[0].lstrip("+").split("=")[0] in output.err


def test_a_checkpoint_whose_weights_are_not_a_mapping_is_named(tmp_path):
    from collections import OrderedDict

    from utils.checkpoint import load_checkpoint

    path = tmp_path / "model.pth"
    torch.save({"arch": "MnistModel", "epoch": 1, "state_dict": OrderedDict}, path)  # a pickle that lost its call
    with pytest.raises(ConfigError, match=f"'{re.escape(str(path))}' is damaged: its 'state_dict' is the class"):
        load_checkpoint(path)


def test_predict_names_a_checkpoint_without_a_config(tmp_path, monkeypatch, capsys):
    checkpoint = tmp_path / "model.pth"
    torch.save({"arch": "MnistModel", "epoch": 1, "state_dict": MnistModel().state_dict()}, checkpoint)
    Image.new("L", (28, 28)).save(tmp_path / "digit.png")
    code, output = run_in_process(monkeypatch, capsys, "predict", "-r", checkpoint, "-i", tmp_path / "digit.png",
                                  "-o", tmp_path / "out.csv")
    assert code == 2 and f"checkpoint '{checkpoint}' holds no config" in output.err
    assert not (tmp_path / "out.csv").exists()


def test_a_target_the_task_cannot_be_told_from_names_the_table(tmp_path):
    path = tmp_path / "table.csv"
    path.write_text("x,label\n1,0.5\n2,1.5\n3,x,9\n")
    with pytest.raises(ConfigError) as err:
        CsvDataLoader(csv_file=str(path), target="label", on_bad_sample="skip")
    assert str(err.value).startswith(f"data_loader.args.csv_file '{path}' (1 bad row(s) left out): the target column")


@pytest.mark.parametrize("program", ["predict", "test"])
@pytest.mark.parametrize("damage", [{"task": "lulticlass"}, {"class_names": 5}])
def test_a_checkpoint_with_unusable_task_keys_is_named(finished_run, tmp_path, monkeypatch, capsys, program, damage):
    checkpoint = load(finished_run / "model_best.pth")
    checkpoint.update(damage)
    case = tmp_path / "case"
    case.mkdir()
    path = case / "damaged.pth"
    torch.save(checkpoint, path)
    Image.new("L", (28, 28)).save(case / "digit.png")
    argv = ["-r", path] + (["-i", case / "digit.png", "-o", case / "out.csv"] if program == "predict" else [])
    code, output = run_in_process(monkeypatch, capsys, program, *argv)
    assert code == 2 and "Traceback" not in output.err
    assert f"checkpoint '{path}': its task keys (task, class_names, target_names, target_scaling) cannot be used" \
        in output.err
    assert sorted(p.name for p in case.iterdir()) == ["damaged.pth", "digit.png"]
