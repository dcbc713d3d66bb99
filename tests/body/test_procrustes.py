import numpy as np
import pytest
import roma
import torch
from scipy.spatial.transform import Rotation

from body.procrustes import procrustes_align, similarity_procrustes


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)  # roma's random rotations use the global generator


def numpy_similarity(src: np.ndarray, dst: np.ndarray):
    """Per-sample reference (N, 3) -> (s, R, t) with dst ~ s R src + t (Umeyama, numpy SVD)."""
    mu_s, mu_d = src.mean(0), dst.mean(0)
    a, b = src - mu_s, dst - mu_d
    u, sig, vt = np.linalg.svd(b.T @ a / len(src))
    fix = np.eye(3)
    if np.linalg.det(u @ vt) < 0:
        fix[2, 2] = -1
    r = u @ fix @ vt
    s = np.trace(np.diag(sig) @ fix) / (a ** 2).sum(1).mean()
    return s, r, mu_d - s * r @ mu_s


def random_similarity(b, gen):
    rot = roma.rotvec_to_rotmat(roma.random_rotvec(b, dtype=torch.float64))  # angles up to pi
    scale = 0.5 + 1.5 * torch.rand(b, generator=gen, dtype=torch.float64)
    t = torch.randn(b, 3, generator=gen, dtype=torch.float64) * 2
    return scale, rot, t


def apply(scale, rot, t, x):
    return scale[:, None, None] * x @ rot.transpose(1, 2) + t[:, None]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_recovers_random_similarity(dtype):
    gen = torch.Generator().manual_seed(0)
    for _ in range(100):
        b, n = 8, 14
        scale, rot, t = random_similarity(b, gen)
        src = torch.randn(b, n, 3, generator=gen, dtype=torch.float64)
        dst = apply(scale, rot, t, src)
        s_hat, r_hat, t_hat = similarity_procrustes(src.to(dtype), dst.to(dtype))
        assert s_hat.dtype == r_hat.dtype == t_hat.dtype == dtype
        tol = 1e-5 if dtype == torch.float32 else 1e-10
        assert torch.allclose(s_hat.double(), scale, atol=tol)
        assert torch.allclose(r_hat.double(), rot, atol=tol)
        assert torch.allclose(t_hat.double(), t, atol=10 * tol)
        aligned = procrustes_align(src.to(dtype), dst.to(dtype))
        assert torch.allclose(aligned.double(), dst, atol=10 * tol)


def test_large_angles_near_pi():
    gen = torch.Generator().manual_seed(3)
    axis = torch.nn.functional.normalize(torch.randn(50, 3, generator=gen, dtype=torch.float64), dim=1)
    rot = roma.rotvec_to_rotmat(axis * (torch.pi - 1e-6))
    src = torch.randn(50, 10, 3, generator=gen, dtype=torch.float64)
    _, r_hat, _ = similarity_procrustes(src, src @ rot.transpose(1, 2))
    assert torch.allclose(r_hat, rot, atol=1e-10)


def test_matches_numpy_reference_on_noisy_data():
    gen = torch.Generator().manual_seed(1)
    scale, rot, t = random_similarity(32, gen)
    src = torch.randn(32, 17, 3, generator=gen, dtype=torch.float64)
    dst = apply(scale, rot, t, src) + 0.1 * torch.randn(32, 17, 3, generator=gen, dtype=torch.float64)
    s_hat, r_hat, t_hat = similarity_procrustes(src, dst)
    for i in range(32):
        s_ref, r_ref, t_ref = numpy_similarity(src[i].numpy(), dst[i].numpy())
        assert s_hat[i].item() == pytest.approx(s_ref, abs=1e-10)
        np.testing.assert_allclose(r_hat[i].numpy(), r_ref, atol=1e-10)
        np.testing.assert_allclose(t_hat[i].numpy(), t_ref, atol=1e-10)


def test_mirrored_target_gives_best_proper_rotation():
    gen = torch.Generator().manual_seed(2)
    src = torch.randn(16, 14, 3, generator=gen, dtype=torch.float64)
    src = src - src.mean(1, keepdim=True)
    mirror = torch.diag(torch.tensor([-1.0, 1.0, 1.0], dtype=torch.float64))
    dst = src @ mirror
    s_hat, r_hat, _ = similarity_procrustes(src, dst)
    assert torch.allclose(torch.linalg.det(r_hat), torch.ones(16, dtype=torch.float64), atol=1e-12)
    for i in range(16):
        # scipy's Kabsch (proper rotations only) on the centred points, independent of scale
        r_ref, _ = Rotation.align_vectors(dst[i].numpy(), src[i].numpy())
        np.testing.assert_allclose(r_hat[i].numpy(), r_ref.as_matrix(), atol=1e-8)
        _, r_np, _ = numpy_similarity(src[i].numpy(), dst[i].numpy())
        np.testing.assert_allclose(r_hat[i].numpy(), r_np, atol=1e-10)
    # a reflection cannot be undone: residual stays positive, and below the unaligned error
    aligned = procrustes_align(src, dst)
    err = (aligned - dst).norm(dim=-1).mean(1)
    assert (err > 1e-3).all() and (err < (src - dst).norm(dim=-1).mean(1)).all()
    assert (s_hat > 0).all() and (s_hat < 1).all()  # the best proper fit shrinks the reflected part


def test_det_is_plus_one_for_random_data():
    src = torch.randn(500, 6, 3, generator=torch.Generator().manual_seed(4))
    dst = torch.randn(500, 6, 3, generator=torch.Generator().manual_seed(5))
    _, r_hat, _ = similarity_procrustes(src, dst)
    assert torch.allclose(torch.linalg.det(r_hat), torch.ones(500), atol=1e-5)
    assert torch.allclose(r_hat.transpose(1, 2) @ r_hat, torch.eye(3).expand(500, 3, 3), atol=1e-5)


def test_alignment_reduces_error_of_noisy_copy():
    gen = torch.Generator().manual_seed(6)
    scale, rot, t = random_similarity(64, gen)
    gt = torch.randn(64, 14, 3, generator=gen)
    noise = 0.05 * torch.randn(64, 14, 3, generator=gen)
    pred = apply(scale.float(), rot.float(), t.float(), gt + noise)
    before = (pred - gt).norm(dim=-1).mean(1)
    aligned = procrustes_align(pred, gt)
    assert ((aligned - gt).norm(dim=-1).mean(1) < before).all()
    # least squares: no worse than undoing the true similarity, which leaves exactly the noise
    rms = lambda x: x.pow(2).sum(-1).mean(1).sqrt()  # noqa: E731
    assert (rms(aligned - gt) <= rms(noise) + 1e-6).all()


def test_weights_ignore_zero_weight_points():
    gen = torch.Generator().manual_seed(7)
    scale, rot, t = random_similarity(4, gen)
    src = torch.randn(4, 12, 3, generator=gen, dtype=torch.float64)
    dst = apply(scale, rot, t, src)
    dst[:, :3] += 10 * torch.randn(4, 3, 3, generator=gen, dtype=torch.float64)  # outliers
    w = torch.ones(4, 12, dtype=torch.float64)
    w[:, :3] = 0
    s_hat, r_hat, t_hat = similarity_procrustes(src, dst, w)
    assert torch.allclose(s_hat, scale) and torch.allclose(r_hat, rot) and torch.allclose(t_hat, t)
    # uniform weights (any constant) equal no weights
    a = similarity_procrustes(src, dst, 3 * torch.ones(4, 12, dtype=torch.float64))
    b = similarity_procrustes(src, dst)
    assert all(torch.allclose(x, y) for x, y in zip(a, b))


def test_shape_errors_and_degenerate_input():
    with pytest.raises(ValueError, match=r"source must have shape \(B, N, 3\)"):
        similarity_procrustes(torch.zeros(14, 3), torch.zeros(14, 3))
    with pytest.raises(ValueError, match="target must have the shape of source"):
        similarity_procrustes(torch.zeros(2, 14, 3), torch.zeros(2, 13, 3))
    with pytest.raises(ValueError, match=r"weights must have shape \(B, N\)"):
        similarity_procrustes(torch.zeros(2, 14, 3), torch.zeros(2, 14, 3), torch.ones(2, 14, 1))
    s, r, t = similarity_procrustes(torch.zeros(1, 5, 3), torch.randn(1, 5, 3))
    assert torch.isfinite(s).all() and torch.isfinite(r).all() and torch.isfinite(t).all()
