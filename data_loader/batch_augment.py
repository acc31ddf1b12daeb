"""Random geometric augmentation of a whole batch in one `F.affine_grid` + `F.grid_sample` call,
each sample with its own random parameters: the batched equivalent of torchvision's per-sample
RandomCrop (with padding, same output size), RandomRotation, RandomAffine (no shear) and the
random flips. Steps are composed into one matrix per sample, so the image is resampled once.

`BatchAugment.from_steps` returns None (with the reason) for a list it cannot batch; the loader
then keeps torchvision's per-sample transforms.
"""
import math

import torch
import torch.nn.functional as F
from torchvision.transforms import InterpolationMode, v2

MODES = {InterpolationMode.NEAREST: "nearest", InterpolationMode.BILINEAR: "bilinear"}


class BatchAugment:
    """`samplers`: functions (batch size, height, width, generator) -> N x 3 x 3 inverse
    matrices in pixel units around the image centre, applied in list order."""

    def __init__(self, samplers, mode):
        self.samplers, self.mode = samplers, mode

    @classmethod
    def from_steps(cls, steps, image_size):
        """(BatchAugment or None, reason when None) for torchvision v2 transform objects."""
        samplers, modes = [], set()
        for step in steps:
            sampler, reason = _step_sampler(step, image_size)
            if sampler is None:
                return None, reason
            samplers.append(sampler)
            if hasattr(step, "interpolation"):  # crops and flips move whole pixels: any mode fits
                if _mode_name(step.interpolation) not in MODES.values():
                    return None, f"{type(step).__name__} uses {step.interpolation} interpolation"
                modes.add(_mode_name(step.interpolation))
        if len(modes) > 1:
            return None, "the steps mix nearest and bilinear interpolation"
        return cls(samplers, modes.pop() if modes else "nearest"), None

    def __call__(self, batch, generator=None):
        """`batch`: float N x C x H x W; returns it transformed (zeros where nothing maps)."""
        if not self.samplers:
            return batch
        n, _, height, width = batch.shape
        inverse = torch.eye(3, device=batch.device).expand(n, 3, 3)
        for sampler in self.samplers:  # output -> input: the last step's inverse acts first
            inverse = inverse @ sampler(n, height, width, generator, batch.device)
        theta = _pixel_to_normalized(inverse, height, width)[:, :2]
        grid = F.affine_grid(theta, list(batch.shape), align_corners=False)
        return F.grid_sample(batch, grid, mode=self.mode, padding_mode="zeros", align_corners=False)


def _mode_name(interpolation):
    return MODES.get(interpolation, str(getattr(interpolation, "value", interpolation)))


def _step_sampler(step, image_size):
    if isinstance(step, v2.RandomCrop):
        return _crop_sampler(step, image_size)
    if isinstance(step, v2.RandomRotation):
        if step.expand or step.center is not None or step.fill not in (0, None):
            return None, "RandomRotation with expand, center or fill is not batched"
        return _rotation_sampler(step.degrees), None
    if isinstance(step, v2.RandomAffine):
        if step.shear is not None or step.center is not None or step.fill not in (0, None):
            return None, "RandomAffine with shear, center or fill is not batched"
        return _affine_sampler(step.degrees, step.translate, step.scale), None
    if isinstance(step, v2.RandomHorizontalFlip | v2.RandomVerticalFlip):
        return _flip_sampler(step.p, horizontal=isinstance(step, v2.RandomHorizontalFlip)), None
    return None, f"{type(step).__name__} has no batched version"


def _crop_sampler(step, image_size):
    """A same-size crop of the zero-padded image is a random whole-pixel shift."""
    left, top, right, bottom = step.padding or (0, 0, 0, 0)
    if tuple(step.size) != tuple(image_size) or step.padding_mode != "constant" or step.fill not in (0, None) \
            or (left, top) != (right, bottom):
        return None, "RandomCrop is batched only with the image's own size, even zero padding"

    def sample(n, height, width, generator, device):
        shift_x = torch.randint(-left, left + 1, (n,), generator=generator, device=device)
        shift_y = torch.randint(-top, top + 1, (n,), generator=generator, device=device)
        return _translation(-shift_x.float(), -shift_y.float())

    return sample, None


def _rotation_sampler(degrees):
    def sample(n, height, width, generator, device):
        return _rotation(_uniform(n, degrees, generator, device))

    return sample


def _affine_sampler(degrees, translate, scale):
    """torchvision's order: rotate and scale about the centre, then shift by whole pixels."""

    def sample(n, height, width, generator, device):
        inverse = _rotation(_uniform(n, degrees, generator, device))
        if scale is not None:
            factor = _uniform(n, scale, generator, device)
            inverse = _scaling(1 / factor) @ inverse
        if translate is not None:
            max_x, max_y = translate[0] * width, translate[1] * height
            shift_x = _uniform(n, (-max_x, max_x), generator, device).round()
            shift_y = _uniform(n, (-max_y, max_y), generator, device).round()
            inverse = inverse @ _translation(-shift_x, -shift_y)
        return inverse

    return sample


def _flip_sampler(p, horizontal):
    def sample(n, height, width, generator, device):
        flip = torch.rand(n, generator=generator, device=device) < p
        sign = 1.0 - 2.0 * flip.float()
        ones = torch.ones_like(sign)
        return _scaling(sign, ones) if horizontal else _scaling(ones, sign)

    return sample


def _uniform(n, bounds, generator, device):
    low, high = float(bounds[0]), float(bounds[1])
    return low + (high - low) * torch.rand(n, generator=generator, device=device)


def _matrix(a, b, c, d, e, f):
    zero, one = torch.zeros_like(a), torch.ones_like(a)
    return torch.stack([torch.stack([a, b, c], -1), torch.stack([d, e, f], -1),
                        torch.stack([zero, zero, one], -1)], -2)


def _translation(dx, dy):
    one, zero = torch.ones_like(dx), torch.zeros_like(dx)
    return _matrix(one, zero, dx, zero, one, dy)


def _scaling(sx, sy=None):
    sy = sx if sy is None else sy
    zero = torch.zeros_like(sx)
    return _matrix(sx, zero, zero, zero, sy, zero)


def _rotation(angle_degrees):
    """Inverse of a counter-clockwise rotation on screen (y pointing down), as torchvision's."""
    rad = angle_degrees * (math.pi / 180)
    cos, sin = torch.cos(rad), torch.sin(rad)
    zero = torch.zeros_like(rad)
    return _matrix(cos, -sin, zero, sin, cos, zero)


def _pixel_to_normalized(matrix, height, width):
    """Conjugate a pixel-unit matrix into grid_sample's [-1, 1] coordinates (align_corners=False)."""
    to_pixels = torch.diag(torch.tensor([width / 2, height / 2, 1.0], device=matrix.device))
    to_normalized = torch.diag(torch.tensor([2 / width, 2 / height, 1.0], device=matrix.device))
    return to_normalized @ matrix @ to_pixels
