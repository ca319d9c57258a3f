"""Temporal coherence: what one video frame's analogy leaves to the next, and the warm starts the
next frame takes from it.

Run frame by frame, every frame's random search and deconvolution land somewhere else, and the
result flickers. Here frame t starts, at every VGG level and every synthesis scale, from what
frame t−1 ended with, carried along the optical flow (`analogy.motion`):

* the NNF φ_a→b (frame → style) is frame t−1's, read at p + backward(p); φ_b→a (style → frame)
  keeps frame t−1's matches, each moved by the forward flow;
* the deconvolution's variable starts from frame t−1's, warped the same way (A′'s) or as it was
  (B's, which lies on the style's still grid);
* where the flow is not trusted (disocclusions, the edge a pan brings in, motion boundaries) the
  frame starts as a single image would: from the NNF upsampled from the level above and the
  voted start.

The searches then only improve on a start that is already good, so they need fewer iterations
(`AnalogyConfig.video_iterations`, `video_deconv_iterations`), and a match changes only where a
better one is found: what frame t−1 showed stays put where the scene did.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Optional, Tuple

import torch

from .motion import Motion, trusted_on, warp_map, warp_nnf_from, warp_nnf_into

Key = Tuple[str, str]  # (a level's name or a synthesis scale's, "ab" or "ba")


@dataclass
class Memory:
    """What a frame's analogy ended with, by (level or scale, direction): the NNFs (source grid ×
    2, matches on the target's grid) and the deconvolutions' variables (1×C×h×w)."""

    nnfs: Dict[Key, torch.Tensor] = field(default_factory=dict)
    variables: Dict[Key, torch.Tensor] = field(default_factory=dict)

    def to(self, device: torch.device) -> "Memory":
        """The same memory on `device`."""
        return Memory({k: v.to(device) for k, v in self.nnfs.items()},
                      {k: v.to(device) for k, v in self.variables.items()})


class Continuity:
    """The warm starts of one frame from the previous frame's `Memory` and the `Motion` between
    them, and the memory this frame leaves (`memory`). Without a previous frame it starts nothing
    (`warm` is False) and only remembers."""

    def __init__(self, previous: Optional[Memory] = None, motion: Optional[Motion] = None) -> None:
        if (previous is None) != (motion is None):
            raise ValueError("a warm start needs both the previous frame's memory and the motion")
        self.previous, self.motion = previous, motion
        self.memory = Memory()
        #: Per (level or scale, direction): the fraction of the start taken from the previous
        #: frame (for the benchmark and the progress).
        self.carried: Dict[Key, float] = {}

    @property
    def warm(self) -> bool:
        return self.previous is not None

    def nnf(self, key: str, direction: str, fresh: torch.Tensor, target_shape) -> torch.Tensor:
        """The NNF the search at `key` starts from: the previous frame's carried along the flow
        where that holds, `fresh` (the single-image start) elsewhere. `target_shape` is the grid
        the NNF points into."""
        old = None if self.previous is None else self.previous.nnfs.get((key, direction))
        if old is None or old.shape != fresh.shape:
            return fresh
        old = old.to(fresh.device)
        if direction == "ab":  # frame → still style: move the source grid
            carried, ok = warp_nnf_from(old, self.motion)
        else:  # still style → frame: move the matches
            carried, ok = warp_nnf_into(old, tuple(target_shape), self.motion)
        self.carried[(key, direction)] = float(ok.float().mean())
        return torch.where(ok[..., None], carried.to(fresh.dtype), fresh).contiguous()

    def variable(self, key: str, direction: str, fresh: torch.Tensor) -> torch.Tensor:
        """Where the deconvolution at `key` starts: the previous frame's variable, warped for A′
        and as it was for B, blended with `fresh` by how far the flow is trusted."""
        old = None if self.previous is None else self.previous.variables.get((key, direction))
        if old is None or old.shape != fresh.shape:
            return fresh
        old = old.to(device=fresh.device, dtype=fresh.dtype)
        if direction == "ba":
            return old.contiguous(memory_format=torch.contiguous_format)
        trust = trusted_on(self.motion.reliable, tuple(fresh.shape[-2:]), fresh.device)
        return torch.lerp(fresh, warp_map(old, self.motion), trust.to(fresh.dtype))

    def keep_nnf(self, key: str, direction: str, nnf: torch.Tensor) -> None:
        self.memory.nnfs[(key, direction)] = nnf

    def keep_variable(self, key: str, direction: str, variable: torch.Tensor) -> None:
        self.memory.variables[(key, direction)] = variable.detach()


class NoContinuity:
    """A single image's analogy: every start is the fresh one and nothing is kept."""

    warm = False

    def nnf(self, key: str, direction: str, fresh: torch.Tensor, target_shape) -> torch.Tensor:
        return fresh

    def variable(self, key: str, direction: str, fresh: torch.Tensor) -> torch.Tensor:
        return fresh

    def keep_nnf(self, key: str, direction: str, nnf: torch.Tensor) -> None:
        pass

    def keep_variable(self, key: str, direction: str, variable: torch.Tensor) -> None:
        pass
