"""Measurements of the CUDA kernels under Numba's CUDA simulator, printed as one JSON line.

Run by tests/test_cuda_sim.py in a subprocess with NUMBA_ENABLE_CUDASIM=1 (the simulator must be
chosen before numba.cuda is first imported): `python tests/cuda_sim_checks.py INPUTS.pt`, where
INPUTS.pt holds real VGG19 maps and images saved by the test. The simulator runs every GPU thread
as a Python thread and reads features element by element, so the maps are about 12×12 and the
searches use the first CHANNELS channels of each map: seconds per search, not hours.
The CUDA kernels get CPU tensors, which they hand to Numba as numpy arrays.
"""
import json
import sys
import time
import warnings

import torch

from analogy.kernels import cpu, cuda
from analogy.nnf import identity_nnf, resample_nnf, upsample_nnf, vote
from analogy.patchmatch import exact_nnf, prepare

#: Channels of each map the searches use.
CHANNELS = 8


def main(path: str) -> dict:
    assert "simulator" in cuda.cuda.jit.__module__, "run with NUMBA_ENABLE_CUDASIM=1"
    # numpy warns about the uint64 wrap-around that the hash relies on (a GPU wraps silently)
    warnings.filterwarnings("ignore", "overflow encountered", RuntimeWarning)
    inputs = {k: v[:, :CHANNELS].contiguous() if v.dim() == 4 else v
              for k, v in torch.load(path).items()}
    gpu, host = cuda.CudaKernels(torch.device("cpu")), cpu.CpuKernels()
    out: dict = {"implementation": getattr(cuda.cuda, "implementation", "?")}
    t0 = time.perf_counter()

    # 1. Global search at relu5_1 (12×12 → 13×14), from the identity, as the pipeline starts.
    a, b = prepare(inputs["a5"], inputs["a5"]), prepare(inputs["b5"], inputs["b5"])
    evaluations = torch.zeros(a.shape[0], dtype=torch.int64)
    nnf, cost = gpu.search(a, b, identity_nnf(a.shape, b.shape), 3, 10, None, seed=3,
                           evaluations=evaluations)
    exact, exact_cost = exact_nnf(a, b, 3)
    out["global_ratio"] = float(cost.mean() / exact_cost.mean())
    cpu_cost = host.search(a, b, identity_nnf(a.shape, b.shape), 3, 10, None, seed=3)[1]
    out["global_cpu_ratio"] = float(cpu_cost.mean() / exact_cost.mean())
    out["global_cost_error"] = float((host.cost(a, b, nnf, 3) - cost).abs().max())
    out["nnf_cost_error"] = float((gpu.cost(a, b, exact, 3) - exact_cost).abs().max())
    out["evaluations"] = int(evaluations.sum())
    out["global_s"] = time.perf_counter() - t0

    # 2. As the pipeline goes on: relu5_1 of smaller images globally, then relu4_1 from the
    #    upsampled NNF with random-search radius 6, against the global exact NNF and the CPU
    #    kernel's search.
    t = time.perf_counter()
    a, b = prepare(inputs["sa5"], inputs["sa5"]), prepare(inputs["sb5"], inputs["sb5"])
    coarse, _ = gpu.search(a, b, identity_nnf(a.shape, b.shape), 3, 10, None, seed=1)
    up_cpu = upsample_nnf(coarse, b.shape, inputs["sa4"].shape[2:], inputs["sb4"].shape[2:])
    up_cuda = gpu.resample_nnf(coarse, b.shape, inputs["sa4"].shape[2:], inputs["sb4"].shape[2:])
    out["upsample_equal"] = bool(torch.equal(up_cpu, up_cuda))
    a, b = prepare(inputs["sa4"], inputs["sa4"]), prepare(inputs["sb4"], inputs["sb4"])
    nnf4, cost4 = gpu.search(a, b, up_cuda, 3, 10, 6, seed=4)
    exact4 = float(exact_nnf(a, b, 3)[1].mean())
    out["upsampled_start_ratio"] = float(cost4.mean() / exact4)
    out["upsampled_start_cpu_ratio"] = float(host.search(a, b, up_cpu, 3, 10, 6, seed=4)[1].mean()
                                             / exact4)
    out["upsampled_start_max_distance"] = int((nnf4 - up_cuda).abs().max())
    out["upsampled_start_s"] = time.perf_counter() - t

    # 3. Determinism: the same seed gives the same NNF, whatever the launch geometry; another seed
    #    another NNF.
    t = time.perf_counter()
    runs = [k.search(a, b, up_cuda, 3, 1, 6, seed=s)[0]
            for k, s in ((gpu, 7), (cuda.CudaKernels(torch.device("cpu"), block=(5, 3)), 7),
                         (gpu, 8))]
    out["same_seed_equal"] = bool(torch.equal(runs[0], runs[1]))
    out["other_seed_differs"] = not torch.equal(runs[0], runs[2])
    out["determinism_s"] = time.perf_counter() - t

    # 4. Voting, against analogy.nnf.vote for the same NNF: features and an image at image
    #    resolution, through the NNF resampled to the images' sizes.
    t = time.perf_counter()
    features = inputs["sb4"][0, :8].contiguous()
    out["vote_features_equal"] = [bool(torch.equal(vote(features, nnf4, k),
                                                   gpu.vote(features, nnf4, k))) for k in (3, 5)]
    image = inputs["image_b"].permute(2, 0, 1).float().contiguous()
    shape_a = tuple(inputs["image_a"].shape[:2])
    final_cpu = resample_nnf(nnf4, b.shape, shape_a, tuple(image.shape[1:]))
    final_cuda = gpu.resample_nnf(nnf4, b.shape, shape_a, tuple(image.shape[1:]))
    out["resample_equal"] = bool(torch.equal(final_cpu, final_cuda))
    out["vote_image_equal"] = bool(torch.equal(vote(image, final_cpu, 3),
                                               gpu.vote(image, final_cpu, 3)))
    # the consensus vote of the synthesis above the working size, on a patch of the image
    crop = final_cpu[:24, :24].contiguous()
    out["consensus_vote_equal"] = [bool(torch.equal(vote(image, crop, 3, tolerance),
                                                    gpu.vote(image, crop, 3, tolerance))
                                        and torch.equal(host.vote(image, crop, 3, tolerance),
                                                        gpu.vote(image, crop, 3, tolerance)))
                                   for tolerance in (0.0, 20.0)]
    out["vote_s"] = time.perf_counter() - t

    # 5. The random samples are the CPU kernel's.
    keys = [(0, 0, 0, 0, 0, 0, 2, 0, 2), (3, 17, 5, 9, 2, 4, 16, 0, 12),
            (2**40 + 5, 7, 11, 300, 1, 100, 126, 287, 313)]
    out["random_samples_equal"] = all(
        tuple(int(v) for v in cuda.random_in(*k)) == tuple(int(v) for v in cpu.random_in(*k))
        for k in keys
    )
    out["total_s"] = time.perf_counter() - t0
    return out


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1])))
