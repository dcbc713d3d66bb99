"""ResNet-50 backbone (He et al. 2016), the image encoder of HMR, PyMAF and BiGraph.

Written here rather than imported from torchvision: torchvision cannot be used with the suite's CPU
torch (its PyPI wheels are CUDA builds whose ops fail to register, and once installed it breaks
``import torchmetrics`` / ``import pytorch_lightning``, which import it). The module tree and therefore
every parameter and buffer name equals torchvision's ``resnet50`` (``conv1``, ``bn1``,
``layer1.0.conv1``, ``layer1.0.downsample.0/1``, ..., ``fc``), so an ImageNet checkpoint saved by
torchvision loads with ``load_state_dict`` unchanged.

Architecture (torchvision's "ResNet v1.5": the stride of a down-sampling bottleneck sits on its 3x3 conv):
    stem   conv 7x7/2 (3 -> w) - BN - ReLU - maxpool 3x3/2              -> (B, w, H/4, W/4)
    layer1 3 bottlenecks, planes w,  stride 1                           -> c2 (B, 4w,  H/4,  W/4)
    layer2 4 bottlenecks, planes 2w, stride 2                           -> c3 (B, 8w,  H/8,  W/8)
    layer3 6 bottlenecks, planes 4w, stride 2                           -> c4 (B, 16w, H/16, W/16)
    layer4 3 bottlenecks, planes 8w, stride 2                           -> c5 (B, 32w, H/32, W/32)
    bottleneck(x) = ReLU(BN(conv1x1(ReLU(BN(conv3x3/s(ReLU(BN(conv1x1(x))))))) + shortcut(x)),
    shortcut = identity, or conv1x1/s - BN in the first block of a layer (``downsample``).
w = ``width`` = 64 for ResNet-50 (c5 has 2048 channels: 2048 x 7 x 7 for a 224 x 224 crop, PyMAF's input).
Inputs are ImageNet-normalised RGB (the data pipeline normalises; this module does not).
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch
from torch import Tensor, nn

from runtime.errors import UserError

IMAGENET_URL = "https://download.pytorch.org/models/resnet50-0676ba61.pth"
EXPANSION = 4  # bottleneck output channels = EXPANSION * planes
NORMS = ("batch", "frozen")


class FrozenBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d that always normalises with its stored statistics and never updates anything.

    Same parameter and buffer names as ``nn.BatchNorm2d`` (so the same checkpoints load); ``train()``
    leaves it in eval mode and its affine parameters have ``requires_grad=False``.
    """

    def __init__(self, num_features: int) -> None:
        super().__init__(num_features)
        self.weight.requires_grad_(False)
        self.bias.requires_grad_(False)
        self.train(False)

    def train(self, mode: bool = True) -> "FrozenBatchNorm2d":
        return super().train(False)


def _norm(kind: str, channels: int) -> nn.BatchNorm2d:
    return FrozenBatchNorm2d(channels) if kind == "frozen" else nn.BatchNorm2d(channels)


def conv3x3(in_ch: int, out_ch: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, kernel_size=3, stride=stride, padding=1, bias=False)


def conv1x1(in_ch: int, out_ch: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, kernel_size=1, stride=stride, bias=False)


class Bottleneck(nn.Module):
    """1x1 (reduce) -> 3x3 (stride) -> 1x1 (expand) with a residual shortcut.

    (B, in_ch, H, W) -> (B, EXPANSION * planes, H / stride, W / stride).
    """

    def __init__(self, in_ch: int, planes: int, stride: int = 1, norm: str = "batch") -> None:
        super().__init__()
        out_ch = planes * EXPANSION
        self.conv1 = conv1x1(in_ch, planes)
        self.bn1 = _norm(norm, planes)
        self.conv2 = conv3x3(planes, planes, stride)
        self.bn2 = _norm(norm, planes)
        self.conv3 = conv1x1(planes, out_ch)
        self.bn3 = _norm(norm, out_ch)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or in_ch != out_ch:
            self.downsample = nn.Sequential(conv1x1(in_ch, out_ch, stride), _norm(norm, out_ch))

    def forward(self, x: Tensor) -> Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + shortcut)


def _make_layer(in_ch: int, planes: int, blocks: int, stride: int, norm: str) -> nn.Sequential:
    """``blocks`` bottlenecks; only the first one strides and changes the channel count."""
    layers = [Bottleneck(in_ch, planes, stride, norm)]
    layers += [Bottleneck(planes * EXPANSION, planes, 1, norm) for _ in range(1, blocks)]
    return nn.Sequential(*layers)


class ResNet50(nn.Module):
    """ResNet-50 feature extractor with torchvision's state-dict names.

    Args:
        pretrained_path: a torchvision-format ImageNet checkpoint (``.pth``) to load, or None for
            random initialisation (the default; torchvision's init: Kaiming-normal convs, BN = identity).
        norm: "batch" (trainable BatchNorm, as HMR/PyMAF fine-tune) or "frozen" (BN statistics and
            affine parameters fixed; same state-dict names).
        layers: bottlenecks per stage; (3, 4, 6, 3) is ResNet-50.
        width: base channel count (64 for ResNet-50). A smaller width (e.g. 16) is a test / CPU
            convenience only: ImageNet weights need width 64.
        num_classes: size of the ImageNet classifier ``fc`` (1000 to hold torchvision's full state dict);
            None (default) builds no classifier, as the mesh-recovery networks use features only.
    """

    def __init__(self, pretrained_path: str | None = None, norm: str = "batch",
                 layers: Sequence[int] = (3, 4, 6, 3), width: int = 64,
                 num_classes: int | None = None) -> None:
        super().__init__()
        if norm not in NORMS:
            raise UserError(f"unknown backbone norm {norm!r}: choose one of {', '.join(NORMS)}")
        if len(layers) != 4 or min(layers) < 1 or width < 1:
            raise ValueError(f"layers must be 4 positive block counts and width positive, "
                             f"got layers={tuple(layers)}, width={width}")
        self.width = width
        self.out_channels = {f"c{i + 2}": width * 2 ** i * EXPANSION for i in range(4)}
        self.feature_dim = self.out_channels["c5"]  # 2048 for ResNet-50

        self.conv1 = nn.Conv2d(3, width, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = _norm(norm, width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        in_ch = width
        for i, blocks in enumerate(layers):
            planes = width * 2 ** i
            self.add_module(f"layer{i + 1}", _make_layer(in_ch, planes, blocks, 1 if i == 0 else 2, norm))
            in_ch = planes * EXPANSION
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(in_ch, num_classes) if num_classes else None
        _init_weights(self)
        if pretrained_path is not None:
            self.load_imagenet(pretrained_path)

    def forward_features(self, x: Tensor) -> dict[str, Tensor]:
        """(B, 3, H, W) -> {"c2": (B, 4w, H/4, W/4), "c3": (B, 8w, H/8, W/8),
        "c4": (B, 16w, H/16, W/16), "c5": (B, 32w, H/32, W/32)} (sizes rounded up per stride-2 step)."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        c2 = self.layer1(x)
        c3 = self.layer2(c2)
        c4 = self.layer3(c3)
        c5 = self.layer4(c4)
        return {"c2": c2, "c3": c3, "c4": c4, "c5": c5}

    def forward(self, x: Tensor) -> Tensor:
        """(B, 3, H, W) -> c5 (B, 32w, H/32, W/32), e.g. (B, 2048, 7, 7) at 224 x 224."""
        return self.forward_features(x)["c5"]

    def pooled(self, x: Tensor) -> Tensor:
        """(B, 3, H, W) -> global average-pooled c5 (B, 32w), HMR's 2048-d feature."""
        return torch.flatten(self.avgpool(self.forward(x)), 1)

    def logits(self, x: Tensor) -> Tensor:
        """(B, 3, H, W) -> ImageNet class scores (B, num_classes); needs ``num_classes``."""
        if self.fc is None:
            raise RuntimeError("this ResNet50 has no classifier: build it with num_classes=1000")
        return self.fc(self.pooled(x))

    def load_imagenet(self, path: str | Path) -> None:
        """Load a torchvision-format ``resnet50`` checkpoint file (see ``read_torchvision_state``)."""
        state = read_torchvision_state(path)
        if self.fc is None:
            state = {k: v for k, v in state.items() if not k.startswith("fc.")}
        _check_compatible(self, state, path)
        self.load_state_dict(state, strict=False)


def _init_weights(model: nn.Module) -> None:
    """torchvision's ResNet initialisation: Kaiming-normal (fan_out, ReLU) convs, BN weight 1 / bias 0."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def _format_hint(path: str | Path) -> str:
    return f"{path} must be torchvision's resnet50 state dict (e.g. ResNet50_Weights.IMAGENET1K_V1)"


def read_torchvision_state(path: str | Path) -> dict[str, Tensor]:
    """Read a checkpoint file into a flat {name: tensor} dict with torchvision's names.

    Accepts a bare state dict or a dict holding it under "state_dict" or "model"; strips a
    DataParallel/DDP "module." prefix. Raises a one-line ``UserError`` for a missing or unreadable file.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(
            f"ImageNet backbone weights not found: {path}. Download torchvision's ResNet50_Weights."
            f"IMAGENET1K_V1 ({IMAGENET_URL}; the HMR/SPIN/PyMAF ImageNet init) and point "
            f"pretrained_path at it, or set pretrained_path to null for the default random init")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # any unpickling / zip failure means "not a plain tensor checkpoint"
        raise UserError(f"cannot read {path} as a torch checkpoint of tensors ({type(err).__name__}); "
                        f"{_format_hint(path)}") from None
    for key in ("state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not all(isinstance(v, Tensor) for v in obj.values()):
        raise UserError(f"{path} holds no state dict of tensors; {_format_hint(path)}")
    return {_strip_prefix(k, "module."): v for k, v in obj.items()}


def _strip_prefix(key: str, prefix: str) -> str:
    return key[len(prefix):] if key.startswith(prefix) else key


def _summarise(keys: list[str], limit: int = 3) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f" (+{len(keys) - limit} more)" if len(keys) > limit else "")


def _check_compatible(model: nn.Module, state: dict[str, Tensor], path: str | Path) -> None:
    """Raise a one-line UserError unless ``state`` fills every parameter and buffer of ``model``
    with the right shape. A missing ``num_batches_tracked`` (pre-2019 torchvision files) is fine."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        raise UserError(f"{path} does not match the ResNet-50 backbone: missing keys "
                        f"[{_summarise(missing)}], unexpected keys [{_summarise(unexpected)}]; "
                        f"{_format_hint(path)}")
    wrong = [f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in expected.items()
             if k in state and state[k].shape != v.shape]
    if wrong:
        raise UserError(f"{path} has tensors of the wrong shape for this backbone (file vs model: "
                        f"{_summarise(wrong)}); ImageNet weights need width=64 and "
                        f"layers=(3, 4, 6, 3); {_format_hint(path)}")
