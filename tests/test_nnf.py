"""NNF utilities: identity, upsampling, resampling to output size, voting."""
import numpy as np
import torch

from analogy.nnf import flow_to_color, identity_nnf, resample_nnf, upsample_nnf, vote


def test_upsample_doubles_coordinates_and_keeps_offsets():
    g = torch.Generator().manual_seed(0)
    nnf = torch.stack([torch.randint(0, 5, (3, 4), generator=g),
                       torch.randint(0, 6, (3, 4), generator=g)], -1).int()
    up = upsample_nnf(nnf, (5, 6), (6, 8), (10, 12))
    for y in range(6):
        for x in range(8):
            assert up[y, x].tolist() == [2 * nnf[y // 2, x // 2, 0] + y % 2,
                                         2 * nnf[y // 2, x // 2, 1] + x % 2]


def test_identity_is_proportional_and_in_bounds():
    ident = identity_nnf((4, 6), (8, 12))
    assert ident[:, :, 0].tolist() == [[1] * 6, [3] * 6, [5] * 6, [7] * 6]
    assert ident[0, :, 1].tolist() == [1, 3, 5, 7, 9, 11]
    same = identity_nnf((7, 9), (7, 9))
    ys, xs = torch.meshgrid(torch.arange(7), torch.arange(9), indexing="ij")
    assert torch.equal(same, torch.stack([ys, xs], -1).int())


def test_resample_shift_to_output_resolution():
    """A shift of 3 working px at half resolution becomes 6 output px."""
    ys, xs = torch.meshgrid(torch.arange(20), torch.arange(30), indexing="ij")
    nnf = torch.stack([(ys - 3).clamp(0, 19), (xs + 2).clamp(0, 29)], -1).int()
    out = resample_nnf(nnf, (20, 30), (40, 60), (40, 60))
    d = out - identity_nnf((40, 60), (40, 60))
    assert (d[10:30, 10:40, 0] == -6).all() and (d[10:30, 10:40, 1] == 4).all()


def test_vote_identity_and_shift(astronaut):
    src = torch.from_numpy(astronaut[:64, :80].astype(np.float32)).permute(2, 0, 1)
    ident = identity_nnf((64, 80), (64, 80))
    assert torch.equal(vote(src, ident, 5), src)
    shifted = ident.clone()
    shifted[..., 1] = (shifted[..., 1] + 3).clamp(max=79)
    out = vote(src, shifted, 3)
    assert torch.allclose(out[:, 5:-5, 5:-8], src[:, 5:-5, 8:-5])


def test_flow_colour_is_white_for_identity_and_coloured_for_motion():
    ident = identity_nnf((10, 10), (10, 10))
    assert (flow_to_color(ident, (10, 10)) == 255).all()
    moved = ident.clone()
    moved[..., 1] = (moved[..., 1] + 2).clamp(max=9)
    assert (flow_to_color(moved, (10, 10))[:, :5] < 255).any()


def test_the_cpu_kernels_give_the_torch_references_values(astronaut):
    """The Numba vote (plain and consensus, 3 and 256 channels), NNF resampling (up, down, to odd
    sizes, the same size) and the synthesis's pixel features equal their torch definitions."""
    from analogy.kernels.cpu import CpuKernels
    from analogy.patchmatch import pixel_features

    kernels, g = CpuKernels(), torch.Generator().manual_seed(3)
    image = torch.from_numpy(astronaut[:48, :64].astype(np.float32)).permute(2, 0, 1)

    def random_nnf(shape, shape_b):
        return torch.stack([torch.randint(0, shape_b[0], shape, generator=g),
                            torch.randint(0, shape_b[1], shape, generator=g)], -1).int()

    nnf = random_nnf((40, 52), (48, 64))
    for patch in (3, 5):
        for tolerance in (None, 20.0):
            assert torch.equal(kernels.vote(image, nnf, patch, tolerance),
                               vote(image, nnf, patch, tolerance))
    features = torch.randn(256, 12, 16, generator=g)
    small = random_nnf((10, 14), (12, 16))
    assert torch.equal(kernels.vote(features, small, 3), vote(features, small, 3))
    for new_a, new_b in (((80, 104), (96, 128)), ((61, 97), (33, 45)), ((17, 23), (20, 30)),
                         ((40, 52), (48, 64))):
        assert torch.equal(kernels.resample_nnf(nnf, (48, 64), new_a, new_b),
                           resample_nnf(nnf, (48, 64), new_a, new_b))
    structure = torch.randn(1, 48, 64, generator=g)
    scales = (1 / 255, 0.5 / 255, 0.7)
    mine, reference = (f(image, image.flip(1), structure, scales)
                       for f in (kernels.pixel_features, pixel_features))
    assert torch.equal(mine.features, reference.features)
    assert torch.allclose(mine.sq_norms, reference.sq_norms, rtol=1e-6)
    assert reference.features[..., 7].abs().max() == 0
