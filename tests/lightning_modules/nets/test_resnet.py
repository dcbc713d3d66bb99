"""ResNet-50: torchvision's state-dict layout, output geometry, checkpoint loading, BN behaviour."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from runtime.errors import UserError
from lightning_modules.nets.resnet import ResNet50


def torchvision_resnet50_keys(layers=(3, 4, 6, 3), width=64, num_classes=1000):
    """(name, shape) of every tensor of torchvision's resnet50 state dict, in order, from the
    architecture description: stem conv/BN, per bottleneck 1x1, 3x3, 1x1 convs each with a BN,
    a conv1x1 + BN ``downsample`` in the first block of every stage, then the classifier ``fc``."""
    def bn(prefix, ch):
        return [(f"{prefix}.weight", (ch,)), (f"{prefix}.bias", (ch,)), (f"{prefix}.running_mean", (ch,)),
                (f"{prefix}.running_var", (ch,)), (f"{prefix}.num_batches_tracked", ())]

    keys = [("conv1.weight", (width, 3, 7, 7)), *bn("bn1", width)]
    in_ch = width
    for stage, blocks in enumerate(layers):
        planes = width * 2 ** stage
        for block in range(blocks):
            p = f"layer{stage + 1}.{block}"
            keys += [(f"{p}.conv1.weight", (planes, in_ch, 1, 1)), *bn(f"{p}.bn1", planes),
                     (f"{p}.conv2.weight", (planes, planes, 3, 3)), *bn(f"{p}.bn2", planes),
                     (f"{p}.conv3.weight", (4 * planes, planes, 1, 1)), *bn(f"{p}.bn3", 4 * planes)]
            if block == 0:
                keys += [(f"{p}.downsample.0.weight", (4 * planes, in_ch, 1, 1)),
                         *bn(f"{p}.downsample.1", 4 * planes)]
            in_ch = 4 * planes
    if num_classes:
        keys += [("fc.weight", (num_classes, in_ch)), ("fc.bias", (num_classes,))]
    return keys


@pytest.fixture(scope="module")
def full_model():
    torch.manual_seed(0)
    return ResNet50(num_classes=1000).eval()


def test_state_dict_matches_torchvision_layout(full_model):
    expected = torchvision_resnet50_keys()
    # stem conv + 5 BN tensors, 16 blocks x (3 convs + 3 x 5 BN), 4 downsamples x (1 + 5), fc weight + bias
    assert len(expected) == 6 + 16 * 18 + 4 * 6 + 2 == 320
    got = [(k, tuple(v.shape)) for k, v in full_model.state_dict().items()]
    assert got == expected


def test_parameter_count_and_feature_sizes(full_model):
    assert sum(p.numel() for p in full_model.parameters()) == 25_557_032
    assert full_model.out_channels == {"c2": 256, "c3": 512, "c4": 1024, "c5": 2048}
    assert full_model.feature_dim == 2048
    # ResNet v1.5: the stride of a down-sampling bottleneck is on its 3x3 conv.
    for stage in (full_model.layer2, full_model.layer3, full_model.layer4):
        assert stage[0].conv1.stride == (1, 1) and stage[0].conv2.stride == (2, 2)
        assert stage[0].downsample[0].stride == (2, 2)


def test_full_size_outputs_at_224(full_model):
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        feats = full_model.forward_features(x)
        assert {k: tuple(v.shape) for k, v in feats.items()} == {
            "c2": (1, 256, 56, 56), "c3": (1, 512, 28, 28), "c4": (1, 1024, 14, 14), "c5": (1, 2048, 7, 7)}
        assert torch.equal(full_model(x), feats["c5"])
        torch.testing.assert_close(full_model.pooled(x), feats["c5"].mean(dim=(2, 3)))
        assert full_model.logits(x).shape == (1, 1000)


def test_default_has_no_classifier_and_reduced_width_strides():
    model = ResNet50(width=16).eval()
    assert model.fc is None and not any(k.startswith("fc.") for k in model.state_dict())
    assert len(model.state_dict()) == 318
    h, w = 100, 75
    with torch.no_grad():
        feats = model.forward_features(torch.randn(2, 3, h, w))
    for level, (name, ch) in enumerate([("c2", 64), ("c3", 128), ("c4", 256), ("c5", 512)]):
        stride = 4 * 2 ** level
        size_h, size_w = h, w
        for _ in range(int(math.log2(stride))):        # every stride-2 step rounds up
            size_h, size_w = math.ceil(size_h / 2), math.ceil(size_w / 2)
        assert feats[name].shape == (2, ch, size_h, size_w)
    with pytest.raises(RuntimeError, match="no classifier"):
        model.logits(torch.randn(1, 3, 32, 32))


def _trained_like(seed, **kwargs):
    """A model with non-trivial BN statistics (so loading them is observable)."""
    torch.manual_seed(seed)
    model = ResNet50(**kwargs)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.1, 0.1)
            m.num_batches_tracked.fill_(7)
    return model.eval()


def _wrappers(state):
    yield "bare", state
    yield "module-prefix", {f"module.{k}": v for k, v in state.items()}
    yield "state_dict-key", {"state_dict": state, "epoch": 3}
    yield "model-key", {"model": {f"module.{k}": v for k, v in state.items()}}
    yield "no-num_batches_tracked", {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}


def test_load_imagenet_round_trip(tmp_path):
    source = _trained_like(1, width=16, num_classes=1000)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        expected = source.forward_features(x)
        expected_logits = source.logits(x)
    for name, obj in _wrappers(source.state_dict()):
        path = tmp_path / f"{name}.pth"
        torch.save(obj, path)
        model = ResNet50(pretrained_path=str(path), width=16).eval()   # no fc: fc.* dropped
        with torch.no_grad():
            got = model.forward_features(x)
        for level in expected:
            assert torch.equal(got[level], expected[level]), (name, level)
        with_fc = ResNet50(width=16, num_classes=1000).eval()
        with_fc.load_imagenet(path)
        with torch.no_grad():
            assert torch.equal(with_fc.logits(x), expected_logits), name


def test_missing_file_error(tmp_path):
    path = tmp_path / "resnet50-0676ba61.pth"
    with pytest.raises(UserError) as err:
        ResNet50(pretrained_path=str(path), width=16)
    message = str(err.value)
    assert "\n" not in message and str(path) in message
    assert "IMAGENET1K_V1" in message and "download.pytorch.org" in message and "random init" in message


def test_wrong_format_errors(tmp_path):
    text = tmp_path / "notes.pth"
    text.write_text("not a checkpoint\n")
    other = tmp_path / "other.pth"
    torch.save({"encoder.weight": torch.zeros(3)}, other)
    listed = tmp_path / "list.pth"
    torch.save([torch.zeros(2)], listed)
    wide = tmp_path / "wide.pth"
    torch.save(ResNet50(width=8).state_dict(), wide)
    deeper = tmp_path / "deeper.pth"
    torch.save(ResNet50(width=16, layers=(3, 4, 7, 3)).state_dict(), deeper)
    cases = [(text, "cannot read"), (other, "missing keys"), (listed, "no state dict"),
             (wide, "wrong shape"), (deeper, r"unexpected keys \[layer3\.6")]
    model = ResNet50(width=16)
    for path, pattern in cases:
        with pytest.raises(UserError, match=pattern) as err:
            model.load_imagenet(path)
        assert "\n" not in str(err.value) and str(path) in str(err.value)
        assert "torchvision's resnet50" in str(err.value)


def _known_answer_model(seed):
    """Main-path convs zero, downsample convs random 1x1 maps, random BN affine parameters (float64).

    With zero convs a BN sees constant 0 and outputs its bias, so every map is constant in space and
    ``expected_constants`` predicts it from the biases alone."""
    gen = torch.Generator().manual_seed(seed)
    model = ResNet50(width=4).double()
    for name, m in model.named_modules():
        if isinstance(m, nn.Conv2d):
            m.weight.data = (torch.randn(m.weight.shape, generator=gen, dtype=torch.float64)
                             if name.endswith("downsample.0") else torch.zeros_like(m.weight))
        elif isinstance(m, nn.BatchNorm2d):
            m.weight.data = torch.rand(m.weight.shape, generator=gen, dtype=torch.float64) + 0.5
            m.bias.data = 2 * torch.randn(m.bias.shape, generator=gen, dtype=torch.float64)
    return model


def expected_constants(model, train):
    """Per-channel constants of c2..c5 for ``_known_answer_model``.

    out = relu(bn3(0) + shortcut) = relu(b3 + shortcut); shortcut = x (identity) or BN(W x) (downsample).
    Eval BN uses running stats (mean 0, var 1): (W x) / sqrt(1 + eps) * g + b. Train BN uses the batch
    statistics of the spatially constant W x, so it removes it: the shortcut is b."""
    x = torch.relu(model.bn1.bias)
    out = {}
    for level, stage in enumerate((model.layer1, model.layer2, model.layer3, model.layer4)):
        for block in stage:
            if block.downsample is None:
                shortcut = x
            else:
                conv, bn = block.downsample
                z = conv.weight[:, :, 0, 0] @ x
                shortcut = bn.bias if train else z / math.sqrt(1 + bn.eps) * bn.weight + bn.bias
            x = torch.relu(block.bn3.bias + shortcut)
        out[f"c{level + 2}"] = x.detach()
    return out


@pytest.mark.parametrize("train", [False, True])
def test_known_answer_residuals_and_relu_placement(train):
    """Would fail with ReLU before the addition, a missing residual or a misplaced downsample."""
    model = _known_answer_model(seed=3).train(train)
    x = torch.randn(2, 3, 64, 48, dtype=torch.float64)
    with torch.no_grad():
        feats = model.forward_features(x)
        expected = expected_constants(model, train)
    for level, const in expected.items():
        assert (const > 0).any() and (const == 0).any()   # both ReLU branches are exercised
        torch.testing.assert_close(feats[level], const[None, :, None, None].expand_as(feats[level]),
                                   rtol=0, atol=1e-9)


def test_batchnorm_train_vs_eval():
    torch.manual_seed(0)
    model = ResNet50(width=8)
    x = torch.randn(3, 3, 32, 32)
    model.eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        alone = model(x[:1])
        batched = model(x)
    torch.testing.assert_close(batched[:1], alone, rtol=1e-5, atol=1e-5)     # eval: per-sample
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    model.train()
    with torch.no_grad():
        train_out = model(x)
    assert not torch.allclose(train_out[:1], alone, atol=1e-3)               # train: batch statistics
    state = model.state_dict()
    assert int(state["layer3.5.bn2.num_batches_tracked"]) == 1
    assert not torch.equal(state["bn1.running_mean"], before["bn1.running_mean"])


def test_frozen_norm_stays_in_eval():
    torch.manual_seed(0)
    model = ResNet50(width=8, norm="frozen").train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(3, 3, 32, 32)
    out = model(x)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    torch.testing.assert_close(out[:1], model(x[:1]), rtol=1e-5, atol=1e-5)
    bn_params = [p for n, p in model.named_parameters() if ".bn" in n or n.startswith("bn1")
                 or "downsample.1" in n]
    assert bn_params and not any(p.requires_grad for p in bn_params)
    assert model.conv1.weight.requires_grad
    assert [k for k in model.state_dict()] == [k for k in ResNet50(width=8).state_dict()]
    with pytest.raises(UserError, match="unknown backbone norm"):
        ResNet50(width=8, norm="group")
