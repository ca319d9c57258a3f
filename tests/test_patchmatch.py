"""The CPU kernels' PatchMatch against the exact brute-force NNF, on real VGG features of real
images (tests/test_gpu.py runs the same checks on the CUDA kernels)."""
import numba
import pytest
import torch

from analogy.kernels.cpu import CpuKernels
from analogy.nnf import identity_nnf, upsample_nnf
from analogy.patchmatch import exact_nnf, prepare
from analogy.pipeline import _resize

KERNELS = CpuKernels()
patchmatch, nnf_cost = KERNELS.search, KERNELS.cost


@pytest.fixture(scope="module")
def pair_features(vgg, skyline, starry):
    fa = vgg.extract(vgg.preprocess(_resize(skyline, (160, 192))))
    fb = vgg.extract(vgg.preprocess(_resize(starry, (176, 224))))
    return fa, fb


@pytest.mark.parametrize("level", [5, 4, 3])
def test_global_search_close_to_exact(pair_features, level):
    """relu5_1 is searched globally in the pipeline; here every level is, from the identity."""
    fa, fb = pair_features
    a, b = prepare(fa[level], fa[level]), prepare(fb[level], fb[level])
    init = identity_nnf(a.shape, b.shape)
    nnf, cost = patchmatch(a, b, init, 3, iterations=10, radius=None, seed=3)
    exact, exact_cost = exact_nnf(a, b, 3)
    assert torch.allclose(nnf_cost(a, b, exact, 3), exact_cost, rtol=1e-4, atol=1e-3)
    assert torch.allclose(nnf_cost(a, b, nnf, 3), cost, rtol=1e-4, atol=1e-3)
    ratio = float(cost.mean() / exact_cost.mean())
    print(f"relu{level}_1 global PatchMatch/exact mean cost ratio: {ratio:.4f}")
    assert 1.0 - 1e-4 <= ratio <= {5: 1.02, 4: 1.03, 3: 1.06}[level]


def test_pipeline_search_close_to_global_exact(pair_features):
    """As the pipeline searches: relu5_1 over the whole map from the identity, then relu4_1 and
    relu3_1 from the upsampled NNF with random-search radius 6. Each level's mean cost is compared
    with the global exact NNF (nothing bounds the search, so that is the optimum it aims at)."""
    fa, fb = pair_features
    a, b = prepare(fa[5], fa[5]), prepare(fb[5], fb[5])
    nnf, cost = patchmatch(a, b, identity_nnf(a.shape, b.shape), 3, 10, None, seed=1)
    ratios = {5: float(cost.mean() / exact_nnf(a, b, 3)[1].mean())}
    for level in (4, 3):
        shape_b = b.shape
        a, b = prepare(fa[level], fa[level]), prepare(fb[level], fb[level])
        nnf, cost = patchmatch(a, b, upsample_nnf(nnf, shape_b, a.shape, b.shape), 3, 10, 6,
                               seed=level)
        ratios[level] = float(cost.mean() / exact_nnf(a, b, 3)[1].mean())
    print("PatchMatch/global exact mean cost as in the pipeline:", ratios)
    assert all(1.0 - 1e-4 <= r <= bound
               for r, bound in zip(ratios.values(), (1.02, 1.05, 1.10))), ratios


def test_exact_of_identical_maps_is_identity(pair_features):
    fa, _ = pair_features
    a = prepare(fa[4], fa[4])
    nnf, cost = exact_nnf(a, a, 3)
    assert (nnf == identity_nnf(a.shape, a.shape)).float().mean() > 0.99
    assert float(cost.abs().max()) < 1e-3


def test_search_recovers_a_known_shift(pair_features):
    """B is A's relu3_1 map moved by (2, -3): the NNF must find that displacement."""
    fa, _ = pair_features
    f = fa[3]
    shifted = torch.roll(f, shifts=(2, -3), dims=(2, 3))
    a, b = prepare(f, f), prepare(shifted, shifted)
    init = identity_nnf(a.shape, b.shape)
    nnf, _ = patchmatch(a, b, init, 3, iterations=10, radius=None, seed=0)
    d = (nnf - init)[4:-4, 4:-4]
    assert ((d[..., 0] == 2) & (d[..., 1] == -3)).float().mean() > 0.95


def test_search_leaves_a_wrong_start_beyond_its_radius(pair_features):
    """B is A's relu3_1 map moved by (2, -3). The start is right except in a block where it is
    off by 12 positions, three times the random-search radius: propagation from the right part
    must carry the true displacement into the block (a search bound to its start could not)."""
    fa, _ = pair_features
    f = fa[3]
    shifted = torch.roll(f, shifts=(2, -3), dims=(2, 3))
    a, b = prepare(f, f), prepare(shifted, shifted)
    ident = identity_nnf(a.shape, b.shape)
    truth = ident + torch.tensor([2, -3], dtype=torch.int32)
    init = truth.clone()
    init[10:30, 10:30, 1] += 12
    nnf, _ = patchmatch(a, b, init, 3, iterations=4, radius=4, seed=0)
    block = nnf[10:30, 10:30]
    recovered = (block == truth[10:30, 10:30]).all(dim=-1).float().mean()
    print(f"wrong block recovered: {float(recovered):.1%}")
    assert recovered > 0.95


def test_same_seed_same_nnf_any_thread_count(pair_features):
    fa, fb = pair_features
    a, b = prepare(fa[2], fa[2]), prepare(fb[2], fb[2])
    init = identity_nnf(a.shape, b.shape)
    runs = []
    threads = numba.get_num_threads()
    try:
        for n in (threads, 1, threads):
            numba.set_num_threads(n)
            runs.append(patchmatch(a, b, init, 5, iterations=4, radius=8, seed=11)[0])
    finally:
        numba.set_num_threads(threads)
    assert torch.equal(runs[0], runs[1]) and torch.equal(runs[0], runs[2])
    other = patchmatch(a, b, init, 5, iterations=4, radius=8, seed=12)[0]
    assert not torch.equal(runs[0], other)
