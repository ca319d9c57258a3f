"""The GPU path without a GPU: the CUDA kernels under Numba's CUDA simulator, their compilation for
a real GPU where NVIDIA's numba-cuda is installed, and device selection.

The simulator has to be chosen before numba.cuda is first imported, so the kernels run in a
subprocess with NUMBA_ENABLE_CUDASIM=1 (tests/cuda_sim_checks.py), once per session, on real VGG19
maps of real images made here; each test below checks one of its measurements. The simulator
checks the kernels' logic; tests/test_gpu.py checks them on a GPU.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from analogy import AnalogyConfig, DeviceError, resolve_device
from analogy.pipeline import _resize

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def sim(tmp_path_factory, vgg, skyline, starry):
    image_a, image_b = _resize(skyline, (96, 96)), _resize(starry, (96, 112))
    big_a = vgg.extract(vgg.preprocess(_resize(skyline, (192, 192))))
    big_b = vgg.extract(vgg.preprocess(_resize(starry, (208, 224))))
    small_a, small_b = vgg.extract(vgg.preprocess(image_a)), vgg.extract(vgg.preprocess(image_b))
    inputs = {
        "a5": big_a[5], "b5": big_b[5],  # 12×12 and 13×14
        # 6×6, 6×7; 12×12, 12×14
        "sa5": small_a[5], "sb5": small_b[5], "sa4": small_a[4], "sb4": small_b[4],
        "image_a": torch.from_numpy(skyline[:50, :60].copy()),
        "image_b": torch.from_numpy(starry[:45, :58].copy()),
    }
    path = tmp_path_factory.mktemp("cuda_sim") / "inputs.pt"
    torch.save(inputs, path)
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1")
    proc = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "cuda_sim_checks.py"), str(path)],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(proc.stdout.strip().splitlines()[-1])
    print("CUDA simulator:", results)
    return results


@pytest.mark.slow
def test_global_search_within_two_percent_of_exact(sim):
    """relu5_1, searched over the whole map from the identity, as the pipeline's first level (on the
    first channels of the maps only, see cuda_sim_checks.py): close to the exact NNF, and no
    worse than the CPU's search of the same problem."""
    assert 1.0 - 1e-4 <= sim["global_ratio"] <= 1.02, sim["global_ratio"]
    assert sim["global_ratio"] <= sim["global_cpu_ratio"] + 0.02, sim
    assert sim["global_cost_error"] < 1e-3  # the returned costs are those of the returned NNF
    assert sim["evaluations"] > 0


@pytest.mark.slow
def test_search_from_upsampled_start_is_unbounded_and_close_to_exact(sim):
    """relu4_1 from the upsampled relu5_1 NNF with radius 6, as the pipeline searches: the mean
    cost is close to the global exact NNF's, as close as the CPU kernel gets, and matches move
    further from their start than the radius where that is better (nothing clamps them)."""
    assert 1.0 - 1e-4 <= sim["upsampled_start_ratio"] <= 1.05, sim["upsampled_start_ratio"]
    assert sim["upsampled_start_ratio"] <= sim["upsampled_start_cpu_ratio"] + 0.02, sim
    assert sim["upsampled_start_max_distance"] > 6


@pytest.mark.slow
def test_same_seed_same_nnf(sim):
    assert sim["same_seed_equal"]
    assert sim["other_seed_differs"]


@pytest.mark.slow
def test_cost_kernel_matches_cpu(sim):
    assert sim["nnf_cost_error"] < 1e-3


@pytest.mark.slow
def test_vote_equals_cpu_vote(sim):
    assert sim["vote_features_equal"] == [True, True]
    assert sim["vote_image_equal"]
    assert sim["consensus_vote_equal"] == [True, True]


@pytest.mark.slow
def test_upsampling_and_resampling_equal_cpu(sim):
    assert sim["upsample_equal"]
    assert sim["resample_equal"]


@pytest.mark.slow
def test_random_samples_are_the_cpu_kernels(sim):
    assert sim["random_samples_equal"]


def _nvidia_target():
    """numba.cuda when it is NVIDIA's numba-cuda with a libNVVM that compiles, else None."""
    try:
        from numba import cuda

        if getattr(cuda, "implementation", "") != "NVIDIA":
            return None
        cuda.compile_ptx(lambda x: None, "void(int32)", cc=(7, 5))
        return cuda
    except Exception:  # noqa: BLE001 - any failure means there is no compiler to test with
        return None


@pytest.mark.skipif(os.environ.get("NUMBA_ENABLE_CUDASIM") == "1" or _nvidia_target() is None,
                    reason="needs NVIDIA's numba-cuda with libNVVM (pip install '.[cuda]'); "
                           "no GPU needed")
@pytest.mark.parametrize("cc", [(7, 5), (9, 0)])
def test_kernels_compile_for_real_gpus(cc):
    """Every CUDA kernel compiles to PTX for a Turing and a Hopper GPU (without a GPU present),
    inlining every device function: nothing the simulator would let pass (a Python-only
    construct, a type the CUDA target lacks) is left in the kernels."""
    from numba import types

    from analogy.kernels import cuda as kernels

    cuda = _nvidia_target()
    f3, f2 = types.Array(types.float32, 3, "C"), types.Array(types.float32, 2, "C")
    i3, counts, i = types.Array(types.int32, 3, "C"), types.Array(types.int64, 1, "C"), types.int64
    signatures = {
        "_cost_kernel": ((f3, f2, f3, f2, i3, f2, i), True),
        "_pass_kernel": ((f3, f2, f3, f2, i3, f2, i3, f2, i, i, i, types.uint64, i, i, counts),
                         True),
        "_vote_kernel": ((f3, i3, i, f3), False),
        "_consensus_vote_kernel": ((f3, i3, i, types.float32, f3), False),
    }
    for name, (signature, fastmath) in signatures.items():
        ptx, _ = cuda.compile_ptx(getattr(kernels, name).py_func, signature, cc=cc,
                                  fastmath=fastmath)
        assert ".entry" in ptx and "call.uni" not in ptx, name


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is present")
def test_device_selection_without_gpu():
    assert resolve_device("auto") == torch.device("cpu")
    assert resolve_device("cpu") == torch.device("cpu")
    for name in ("cuda", "cuda:1"):
        with pytest.raises(DeviceError, match="no CUDA device is available"):
            resolve_device(name)
    assert AnalogyConfig().device == "auto"


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is present")
def test_cli_cuda_without_gpu_exits_with_one_line(tmp_path, skyline, starry):
    """The real command in its own process: non-zero status, one line saying there is no GPU."""
    from PIL import Image

    a, b = tmp_path / "a.png", tmp_path / "b.png"
    Image.fromarray(skyline[:120, :150]).save(a)
    Image.fromarray(starry[:120, :150]).save(b)
    proc = subprocess.run(
        [sys.executable, str(ROOT / "cli.py"), str(a), str(b), "-o", str(tmp_path / "out"),
         "--device", "cuda"],
        capture_output=True, text=True, cwd=ROOT, timeout=300,
    )
    assert proc.returncode != 0
    lines = [line for line in (proc.stdout + proc.stderr).splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert "no cuda device is available" in lines[0].lower()
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
