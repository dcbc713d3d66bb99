"""metrics.functional: PA-MPJPE against an independent numpy SVD, known answers, segmentation by hand."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from body.joints import H36M_TO_LSP14, LSP14_HIP_INDICES
from metrics import functional as F


def numpy_pa_mpjpe(pred: np.ndarray, target: np.ndarray) -> float:
    """Reference: one sample, (J, 3) metres -> mm; Kabsch-Umeyama with H = Xc^T Yc and a det fix."""
    xc = pred - pred.mean(axis=0)
    yc = target - target.mean(axis=0)
    u, s, vt = np.linalg.svd(xc.T @ yc)
    sign = np.sign(np.linalg.det(vt.T @ u.T))
    d = np.diag([1.0, 1.0, sign])
    rot = vt.T @ d @ u.T                                  # maps centred pred onto centred target
    scale = np.trace(np.diag(s) @ d) / (xc ** 2).sum()
    aligned = scale * xc @ rot.T + target.mean(axis=0)
    return float(np.linalg.norm(aligned - target, axis=1).mean() * 1000.0)


def random_rotations(n: int, g: torch.Generator) -> torch.Tensor:
    q, r = torch.linalg.qr(torch.randn(n, 3, 3, generator=g, dtype=torch.float64))
    q = q * torch.sign(torch.diagonal(r, dim1=1, dim2=2))[:, None, :]
    q[torch.linalg.det(q) < 0, :, 0] *= -1
    return q


@pytest.fixture
def gen() -> torch.Generator:
    return torch.Generator().manual_seed(0)


def test_pa_mpjpe_equals_numpy_svd_on_1000_samples(gen):
    pred = torch.randn(1000, 14, 3, generator=gen, dtype=torch.float64) * 0.3
    target = pred + torch.randn(1000, 14, 3, generator=gen, dtype=torch.float64) * 0.05
    target = target @ random_rotations(1000, gen).transpose(1, 2) + torch.randn(1000, 1, 3, generator=gen, dtype=torch.float64)
    got = F.pa_mpjpe(pred, target)
    ref = np.array([numpy_pa_mpjpe(p, t) for p, t in zip(pred.numpy(), target.numpy())])
    assert got.dtype == torch.float64 and got.shape == (1000,)
    np.testing.assert_allclose(got.numpy(), ref, rtol=0, atol=1e-6)


def test_pa_mpjpe_zero_for_similarity_copy(gen):
    x = torch.randn(64, 14, 3, generator=gen, dtype=torch.float64) * 0.4
    scale = torch.rand(64, 1, 1, generator=gen, dtype=torch.float64) * 2 + 0.2
    y = scale * x @ random_rotations(64, gen).transpose(1, 2) + torch.randn(64, 1, 3, generator=gen, dtype=torch.float64) * 3
    assert F.pa_mpjpe(y, x).abs().max() < 1e-9
    assert F.pa_mpjpe(x, y).abs().max() < 1e-9


def test_pa_mpjpe_never_reflects(gen):
    x = torch.randn(200, 14, 3, generator=gen, dtype=torch.float64) * 0.4
    mirrored = x * torch.tensor([-1.0, 1.0, 1.0], dtype=torch.float64)
    got = F.pa_mpjpe(x, mirrored)
    ref = np.array([numpy_pa_mpjpe(p, t) for p, t in zip(x.numpy(), mirrored.numpy())])
    np.testing.assert_allclose(got.numpy(), ref, rtol=0, atol=1e-6)
    assert got.min() > 1.0          # a reflection would reach 0


def test_pa_mpjpe_float32_close_to_float64(gen):
    pred = torch.randn(100, 14, 3, generator=gen, dtype=torch.float64) * 0.3
    target = pred + torch.randn(100, 14, 3, generator=gen, dtype=torch.float64) * 0.05
    got32 = F.pa_mpjpe(pred.float(), target.float())
    assert got32.dtype == torch.float32
    torch.testing.assert_close(got32.double(), F.pa_mpjpe(pred, target), rtol=0, atol=1e-3)


def test_mpjpe_constant_offset_is_10mm(gen):
    target = torch.randn(8, 14, 3, generator=gen)
    direction = torch.nn.functional.normalize(torch.randn(3, generator=gen), dim=0)
    pred = target + 0.010 * direction
    torch.testing.assert_close(F.mpjpe(pred, target), torch.full((8,), 10.0), rtol=0, atol=1e-4)


def test_mpjpe_pelvis_removes_global_translation(gen):
    target = torch.randn(8, 17, 3, generator=gen, dtype=torch.float64)
    pred = target + torch.randn(8, 1, 3, generator=gen, dtype=torch.float64) * 5
    assert F.mpjpe(pred, target).min() > 100
    assert F.mpjpe(pred, target, pelvis=0).abs().max() < 1e-9
    assert F.mpjpe(pred, target, pelvis=(1, 4)).abs().max() < 1e-9


def test_mpjpe_pelvis_tuple_averages_the_root():
    target = torch.zeros(1, 3, 3, dtype=torch.float64)
    pred = target.clone()
    pred[0, 0, 0] = 0.002                      # moves the mean of joints 0 and 1 by 1 mm along x
    # after centring on that mean, errors are |2-1| = 1, |0-1| = 1 and |0-1| = 1 mm
    torch.testing.assert_close(F.mpjpe(pred, target, pelvis=(0, 1)), torch.tensor([1.0], dtype=torch.float64))


def test_mpjpe_weights():
    target = torch.zeros(2, 4, 3, dtype=torch.float64)
    pred = target.clone()
    pred[:, 3, 2] = 0.1                        # only joint 3 is off, by 100 mm
    w = torch.tensor([[1.0, 1.0, 1.0, 0.0], [1.0, 0.0, 0.0, 1.0]], dtype=torch.float64)
    torch.testing.assert_close(F.mpjpe(pred, target, weights=w), torch.tensor([0.0, 50.0], dtype=torch.float64))
    with pytest.raises(ValueError, match="weights"):
        F.mpjpe(pred, target, weights=w[:, :3])


def test_mpjpe_shape_errors():
    with pytest.raises(ValueError, match="shape"):
        F.mpjpe(torch.zeros(2, 14, 3), torch.zeros(2, 13, 3))
    with pytest.raises(ValueError, match="shape"):
        F.mpjpe(torch.zeros(2, 14), torch.zeros(2, 14))


def test_pve_alignments(gen):
    target = torch.randn(4, 500, 3, generator=gen, dtype=torch.float64) * 0.3
    torch.testing.assert_close(F.pve(target + torch.tensor([0.0, 0.0, 0.010], dtype=torch.float64), target),
                               torch.full((4,), 10.0, dtype=torch.float64))
    shift = torch.randn(4, 3, generator=gen, dtype=torch.float64)
    pelvis = torch.randn(4, 3, generator=gen, dtype=torch.float64)
    moved = target + shift[:, None]
    assert F.pve(moved, target, "pelvis", pelvis + shift, pelvis).abs().max() < 1e-9
    similar = 1.3 * target @ random_rotations(4, gen).transpose(1, 2) + shift[:, None]
    assert F.pve(similar, target, "procrustes").abs().max() < 1e-9
    assert F.pve(similar, target, "none").min() > 10
    with pytest.raises(ValueError, match="pelvis_pred"):
        F.pve(moved, target, "pelvis")
    with pytest.raises(ValueError, match="alignment"):
        F.pve(moved, target, "centroid")


def test_lsp14_and_protocol_joints(gen):
    j17 = torch.randn(5, 17, 3, generator=gen, dtype=torch.float64)
    lsp = F.lsp14_from_h36m17(j17)
    assert lsp.shape == (5, 14, 3)
    for i, h in enumerate(H36M_TO_LSP14):
        torch.testing.assert_close(lsp[:, i], j17[:, h])
    torch.testing.assert_close(F.protocol_joints(j17), lsp - j17[:, :1])
    hips = F.protocol_joints(j17, root="hips")
    assert hips[:, list(LSP14_HIP_INDICES)].mean(dim=1).abs().max() < 1e-12
    # A translated copy has zero protocol MPJPE under either root.
    moved = j17 + torch.randn(5, 1, 3, generator=gen, dtype=torch.float64)
    for root in ("pelvis", "hips"):
        assert F.mpjpe(F.protocol_joints(moved, root), F.protocol_joints(j17, root)).abs().max() < 1e-9
    with pytest.raises(ValueError, match="root"):
        F.protocol_joints(j17, root="neck")
    with pytest.raises(ValueError, match="17"):
        F.lsp14_from_h36m17(torch.zeros(5, 14, 3))


def confusion_by_loops(pred: np.ndarray, target: np.ndarray, n: int, ignore: int) -> np.ndarray:
    c = np.zeros((n, n), dtype=np.int64)
    for p, t in zip(pred.reshape(-1), target.reshape(-1)):
        if t != ignore:
            c[t, p] += 1
    return c


def test_segmentation_confusion_and_scores_by_hand(gen):
    n = 7
    target = torch.randint(0, n, (3, 20, 24), generator=gen)
    target[torch.rand(target.shape, generator=gen) < 0.15] = 255
    pred = torch.where(torch.rand(target.shape, generator=gen) < 0.6, target.clamp(max=n - 1),
                       torch.randint(0, n, target.shape, generator=gen))
    conf = F.segmentation_confusion(pred, target, n)
    ref = confusion_by_loops(pred.numpy(), target.numpy(), n, 255)
    np.testing.assert_array_equal(conf.numpy(), ref)

    ignored = F.ignored_prediction_counts(pred, target, n)
    scores = F.segmentation_scores(conf, ignored)
    # By hand, UP-3D / SPIN style: per-class tp / fp / fn with ignored pixels dropped.
    p, t = pred.numpy().reshape(-1), target.numpy().reshape(-1)
    keep = t != 255
    f1 = []
    for c in range(n):
        tp = np.sum((p == c) & (t == c) & keep)
        fp = np.sum((p == c) & (t != c) & keep)
        fn = np.sum((p != c) & (t == c) & keep)
        f1.append(2 * tp / (2 * tp + fp + fn))
    np.testing.assert_allclose(scores["per_class_f1"].numpy(), f1, rtol=1e-12)
    assert float(scores["mean_f1"]) == pytest.approx(np.mean(f1), rel=1e-12)
    assert float(scores["accuracy"]) == pytest.approx(np.mean(p[keep] == t[keep]), rel=1e-12)
    # SPIN's parts accuracy: ignored labels become background (0) and every pixel counts.
    t0 = np.where(t == 255, 0, t)
    assert float(scores["accuracy_ignored_as_background"]) == pytest.approx(np.mean(p == t0), rel=1e-12)


def test_segmentation_absent_class_is_nan_and_skipped():
    conf = torch.tensor([[5, 1, 0], [2, 4, 0], [0, 0, 0]])
    s = F.segmentation_scores(conf)
    assert torch.isnan(s["per_class_f1"][2])
    assert float(s["mean_f1"]) == pytest.approx(float(s["per_class_f1"][:2].mean()))
    assert "accuracy_ignored_as_background" not in s
