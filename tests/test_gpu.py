"""The CUDA kernels and the whole method on a real GPU (marker `gpu`: skipped, with the reason,
where no CUDA device runs the kernels). Real VGG19 features of the example images throughout;
the CPU kernels are the reference."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import analogy
from analogy import AnalogyConfig
from analogy.kernels import kernels_for, resolve_device
from analogy.kernels.cpu import CpuKernels
from analogy.kernels.cuda import CudaKernels
from analogy.nnf import gridness, identity_nnf, upsample_nnf
from analogy.patchmatch import SearchFeatures, exact_nnf, prepare
from analogy.pipeline import _resize

from .conftest import psnr

pytestmark = pytest.mark.gpu
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def device():
    return resolve_device("cuda")


@pytest.fixture(scope="module")
def gpu(device):
    return kernels_for(device)


@pytest.fixture(scope="module")
def features(vgg, skyline, starry):
    fa = vgg.extract(vgg.preprocess(_resize(skyline, (160, 192))))
    fb = vgg.extract(vgg.preprocess(_resize(starry, (176, 224))))
    return fa, fb


def _to(side: SearchFeatures, device) -> SearchFeatures:
    return SearchFeatures(*(t.to(device) for t in side))


def test_auto_picks_the_gpu(device, gpu):
    assert device.type == "cuda"
    assert resolve_device("auto") == device
    assert isinstance(gpu, CudaKernels)


@pytest.mark.parametrize("level,k", [(5, 3), (3, 3), (2, 5)])
def test_cost_equals_the_cpu_kernels(features, device, gpu, level, k):
    """The patch cost of the exact NNF and of a shifted one, on the GPU and the CPU: equal to
    float rounding (the GPU sums in its own order)."""
    fa, fb = features
    a, b = prepare(fa[level], fa[level]), prepare(fb[level], fb[level])
    ident = identity_nnf(a.shape, b.shape)
    for nnf in (ident, (ident + torch.tensor([3, -2], dtype=torch.int32)).clamp_(min=0)):
        nnf[..., 0].clamp_(max=b.shape[0] - 1)
        nnf[..., 1].clamp_(max=b.shape[1] - 1)
        host = CpuKernels().cost(a, b, nnf, k)
        dev = gpu.cost(_to(a, device), _to(b, device), nnf.to(device), k).cpu()
        assert torch.allclose(dev, host, rtol=1e-5, atol=1e-5), float((dev - host).abs().max())


@pytest.mark.parametrize("k", [3, 5])
def test_vote_equals_the_cpu_vote_byte_for_byte(features, device, gpu, skyline, k):
    fa, fb = features
    a, b = prepare(fa[3], fa[3]), prepare(fb[3], fb[3])
    nnf, _ = CpuKernels().search(a, b, identity_nnf(a.shape, b.shape), 3, 5, None, seed=1)
    source = fb[3][0]
    assert torch.equal(gpu.vote(source.to(device), nnf.to(device), k).cpu(),
                       CpuKernels().vote(source, nnf, k))
    image = torch.from_numpy(skyline[:150, :170].astype(np.float32)).permute(2, 0, 1).contiguous()
    out = CpuKernels().resample_nnf(nnf, b.shape, (140, 160), tuple(image.shape[1:]))
    assert torch.equal(gpu.vote(image.to(device), out.to(device), k).cpu(),
                       CpuKernels().vote(image, out, k))


def test_resampling_equals_the_cpu(features, device, gpu):
    fa, fb = features
    a, b = prepare(fa[4], fa[4]), prepare(fb[4], fb[4])
    nnf, _ = CpuKernels().search(a, b, identity_nnf(a.shape, b.shape), 3, 5, None, seed=2)
    for new_a, new_b in (((40, 48), (44, 56)), ((151, 173), (160, 211))):
        assert torch.equal(gpu.resample_nnf(nnf.to(device), b.shape, new_a, new_b).cpu(),
                           CpuKernels().resample_nnf(nnf, b.shape, new_a, new_b))


def test_gpu_search_close_to_exact(features, device, gpu):
    """As the pipeline searches: relu5_1 globally from the identity, relu4_1 and relu3_1 from the
    upsampled NNF with radius 6, each against the global exact NNF: the CPU's bounds."""
    fa, fb = features
    a, b = prepare(fa[5], fa[5]), prepare(fb[5], fb[5])
    nnf, cost = gpu.search(_to(a, device), _to(b, device), identity_nnf(a.shape, b.shape, device),
                           3, 10, None, seed=1)
    ratios = {5: float(cost.mean().cpu() / exact_nnf(a, b, 3)[1].mean())}
    for level in (4, 3):
        shape_b = b.shape
        a, b = prepare(fa[level], fa[level]), prepare(fb[level], fb[level])
        start = upsample_nnf(nnf, shape_b, a.shape, b.shape)
        nnf, cost = gpu.search(_to(a, device), _to(b, device), start, 3, 10, 6, seed=level)
        assert torch.allclose(CpuKernels().cost(a, b, nnf.cpu(), 3), cost.cpu(), rtol=1e-4,
                              atol=1e-4)
        ratios[level] = float(cost.mean().cpu() / exact_nnf(a, b, 3)[1].mean())
    print("GPU PatchMatch / global exact mean cost:", ratios)
    assert all(1.0 - 1e-4 <= r <= bound
               for r, bound in zip(ratios.values(), (1.02, 1.05, 1.10))), ratios


def test_gpu_search_is_deterministic_for_any_launch_geometry(features, device, gpu):
    fa, fb = features
    a, b = _to(prepare(fa[3], fa[3]), device), _to(prepare(fb[3], fb[3]), device)
    start = identity_nnf(a.shape, b.shape, device)
    runs = [k.search(a, b, start, 3, 4, 8, seed=s)[0].cpu()
            for k, s in ((gpu, 11), (gpu, 11), (CudaKernels(device, block=(16, 4)), 11), (gpu, 12))]
    assert torch.equal(runs[0], runs[1]) and torch.equal(runs[0], runs[2])
    assert not torch.equal(runs[0], runs[3])


def test_analogy_on_the_gpu_is_reproducible_and_looks_right(skyline, starry, astronaut):
    """Twice the same bytes; an image with itself comes back; no tiling on the relu5_1 grid."""
    runs = [analogy.analogy(skyline, starry, size=128, device="cuda", seed=5) for _ in range(2)]
    assert np.array_equal(runs[0].a_prime, runs[1].a_prime) and np.array_equal(runs[0].b, runs[1].b)
    assert np.array_equal(runs[0].nnf_ab, runs[1].nnf_ab)
    for side in ("ab", "ba"):
        assert gridness(torch.from_numpy(getattr(runs[0], f"working_nnf_{side}")))[0] <= 1.2
    image = astronaut[::2, ::2]
    same = analogy.analogy(image, image, size=128, device="cuda")
    assert psnr(same.a_prime, image) >= 35 and psnr(same.b, image) >= 35


@pytest.mark.parametrize("device_option", ["cuda", "cuda:0", "auto"])
def test_cli_end_to_end_on_cuda(tmp_path, skyline, starry, device_option):
    from PIL import Image

    a, b = tmp_path / "a.png", tmp_path / "b.png"
    Image.fromarray(skyline[:180, :240]).save(a)
    Image.fromarray(starry[:200, :220]).save(b)
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "cli.py"), str(a), str(b), "-o", str(out),
         "--device", device_option, "--size", "128", "--preview"],
        capture_output=True, text=True, cwd=ROOT, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "working sizes" in proc.stderr
    assert np.asarray(Image.open(out / "A_prime.png")).shape == (180, 240, 3)
    assert np.asarray(Image.open(out / "B.png")).shape == (200, 220, 3)


def test_default_config_runs_on_the_gpu(device):
    """With a usable GPU, auto (the default) resolves to it, so users get it without asking."""
    assert AnalogyConfig().device == "auto" and resolve_device(AnalogyConfig().device) == device
