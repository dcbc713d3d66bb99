"""The torchmetrics classes: accumulation over batches equals the functional result; input checks."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torchmetrics import MetricCollection

from metrics import MPJPE, PAMPJPE, PVE, PerIterationMPJPE, SegmentationScores
from metrics import functional as F


@pytest.fixture
def joints() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    target = torch.randn(50, 14, 3, generator=g) * 0.3
    pred = target + torch.randn(50, 14, 3, generator=g) * 0.04
    return pred, target


def feed(metric, pred, target, sizes=(7, 20, 23)):
    start = 0
    for n in sizes:
        metric.update(pred[start:start + n], target[start:start + n])
        start += n
    assert start == len(pred)
    return metric.compute()


def test_mpjpe_pampjpe_accumulate_over_batches(joints):
    pred, target = joints
    got = feed(MPJPE(), pred, target)
    assert float(got) == pytest.approx(float(F.mpjpe(pred.double(), target.double()).mean()), rel=1e-6)
    got = feed(PAMPJPE(), pred, target)
    assert float(got) == pytest.approx(float(F.pa_mpjpe(pred.double(), target.double()).mean()), rel=1e-6)


def test_mpjpe_constant_offset_and_pelvis():
    target = torch.randn(10, 17, 3, generator=torch.Generator().manual_seed(2))
    m = MPJPE()
    m.update(target + torch.tensor([0.0, 0.010, 0.0]), target)
    assert float(m.compute()) == pytest.approx(10.0, abs=1e-4)
    m = MPJPE(pelvis=0)
    m.update(target + torch.tensor([3.0, -1.0, 7.0]), target)
    assert float(m.compute()) == pytest.approx(0.0, abs=1e-3)


def test_pve_class():
    g = torch.Generator().manual_seed(3)
    target = torch.randn(6, 300, 3, generator=g) * 0.3
    m = PVE()
    m.update(target + torch.tensor([0.010, 0.0, 0.0]), target)
    assert float(m.compute()) == pytest.approx(10.0, abs=1e-4)
    shift = torch.randn(6, 3, generator=g)
    m = PVE(alignment="pelvis")
    m.update(target + shift[:, None], target, pelvis_pred=shift, pelvis_target=torch.zeros(6, 3))
    assert float(m.compute()) == pytest.approx(0.0, abs=1e-3)
    with pytest.raises(ValueError, match="pelvis_pred"):
        m.update(target, target)
    m = PVE(alignment="procrustes")
    m.update(2.0 * target + 1.0, target)
    assert float(m.compute()) == pytest.approx(0.0, abs=1e-3)
    with pytest.raises(ValueError, match="alignment"):
        PVE(alignment="root")


@pytest.mark.parametrize("cls", [MPJPE, PAMPJPE, PVE])
def test_millimetres_are_refused(cls, joints):
    pred, target = joints
    metric = cls()
    with pytest.raises(ValueError, match="looks like millimetres; pass metres"):
        metric.update(pred * 1000, target * 1000)
    with pytest.raises(ValueError, match="target looks like millimetres"):
        metric.update(pred, target * 1000)


@pytest.mark.parametrize("cls", [MPJPE, PAMPJPE, PVE])
def test_nan_shape_and_dtype_are_refused(cls, joints):
    pred, target = joints
    metric = cls()
    bad = pred.clone()
    bad[3, 2, 1] = float("nan")
    with pytest.raises(ValueError, match="pred contains NaN"):
        metric.update(bad, target)
    with pytest.raises(ValueError, match="target contains NaN"):
        metric.update(pred, target.clone().fill_(float("inf")))
    with pytest.raises(ValueError, match="shape"):
        metric.update(pred[:, :13], target)
    with pytest.raises(ValueError, match="shape"):
        metric.update(pred[..., :2], target[..., :2])
    with pytest.raises(ValueError, match="floating"):
        metric.update(pred.long(), target.long())
    assert int(metric.total) == 0          # nothing was accumulated by the refused calls


def test_per_iteration_mpjpe(joints):
    pred, target = joints
    g = torch.Generator().manual_seed(4)
    preds = [target + torch.randn(target.shape, generator=g) * s for s in (0.08, 0.05, 0.03, 0.02)]
    metric = PerIterationMPJPE(4)
    metric.update([p[:20] for p in preds], target[:20])
    metric.update(torch.stack([p[20:] for p in preds]), target[20:])
    got = metric.compute()
    want = torch.stack([F.mpjpe(p.double(), target.double()).mean() for p in preds])
    torch.testing.assert_close(got, want, rtol=1e-6, atol=0)
    assert (got[1:] < got[:-1]).all()
    pa = PerIterationMPJPE(4, procrustes=True)
    pa.update(preds, target)
    torch.testing.assert_close(pa.compute(), torch.stack([F.pa_mpjpe(p.double(), target.double()).mean() for p in preds]),
                               rtol=1e-6, atol=0)
    with pytest.raises(ValueError, match="expected 4"):
        metric.update(preds[:3], target)

    # The documented alternative: a MetricCollection of MPJPE, one update per iteration.
    coll = MetricCollection({f"mpjpe_it{i}": MPJPE() for i in range(4)})
    for i, p in enumerate(preds):
        coll[f"mpjpe_it{i}"].update(p, target)
    out = coll.compute()
    torch.testing.assert_close(torch.stack([out[f"mpjpe_it{i}"] for i in range(4)]), want, rtol=1e-6, atol=0)


def test_segmentation_scores_class_equals_hand_counts():
    g = torch.Generator().manual_seed(5)
    n = 7
    target = torch.randint(0, n, (4, 16, 18), generator=g)
    target[torch.rand(target.shape, generator=g) < 0.2] = 255
    pred = torch.where(torch.rand(target.shape, generator=g) < 0.5, target.clamp(max=n - 1),
                       torch.randint(0, n, target.shape, generator=g))
    metric = SegmentationScores(n)
    metric.update(pred[:1], target[:1])
    metric.update(pred[1:].to(torch.uint8), target[1:].to(torch.uint8))
    got = metric.compute()

    conf = np.zeros((n, n), dtype=np.int64)
    for p, t in zip(pred.reshape(-1).tolist(), target.reshape(-1).tolist()):
        if t != 255:
            conf[t, p] += 1
    np.testing.assert_array_equal(metric.confusion.numpy(), conf)
    tp = np.diag(conf)
    f1 = 2 * tp / (conf.sum(0) + conf.sum(1))
    np.testing.assert_allclose(got["per_class_f1"].numpy(), f1, rtol=1e-12)
    assert float(got["accuracy"]) == pytest.approx(tp.sum() / conf.sum(), rel=1e-12)
    assert float(got["mean_f1"]) == pytest.approx(f1.mean(), rel=1e-12)


def test_segmentation_scores_validates():
    metric = SegmentationScores(2)
    z = torch.zeros(1, 4, 4, dtype=torch.long)
    with pytest.raises(ValueError, match="pred has labels outside"):
        metric.update(z + 2, z)
    with pytest.raises(ValueError, match="target has labels outside"):
        metric.update(z, z + 3)
    with pytest.raises(ValueError, match="integer"):
        metric.update(z.float(), z)
    with pytest.raises(ValueError, match="shape|\\(B, H, W\\)"):
        metric.update(z, z[:, :3])
    with pytest.raises(ValueError, match="ignore_index"):
        SegmentationScores(7, ignore_index=3)
    metric.update(z, z + 255)                   # all ignored: counts only the ignored predictions
    assert int(metric.confusion.sum()) == 0 and int(metric.ignored_pred.sum()) == 16


def test_reset_clears_states(joints):
    pred, target = joints
    metric = MPJPE()
    metric.update(pred, target)
    metric.reset()
    metric.update(pred[:5], target[:5])
    assert int(metric.total) == 5
