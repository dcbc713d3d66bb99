"""Two gloo ranks, each updating with its share of the data, compute what one process computes on all of it."""
from __future__ import annotations

import socket
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from metrics import MPJPE, PAMPJPE, PVE, KeypointAP, PerIterationMPJPE, SegmentationScores
from tests.metrics.test_keypoint_ap import make_coco_set, to_tensors

WORLD = 2
N = 30                     # 3D samples; rank 0 gets 18, rank 1 gets 12 (uneven on purpose)


def make_data() -> dict:
    g = torch.Generator().manual_seed(0)
    target = torch.randn(N, 14, 3, generator=g) * 0.3
    iters = [target + torch.randn(N, 14, 3, generator=g) * s for s in (0.06, 0.04, 0.02)]
    verts_t = torch.randn(N, 200, 3, generator=g) * 0.3
    seg_t = torch.randint(0, 7, (N, 12, 10), generator=g)
    seg_t[torch.rand(seg_t.shape, generator=g) < 0.1] = 255
    gt, dets = make_coco_set(3)
    return {
        "target": target, "iters": iters, "pred": iters[-1],
        "verts_t": verts_t, "verts_p": verts_t + torch.randn(N, 200, 3, generator=g) * 0.02,
        "pelvis_p": torch.randn(N, 3, generator=g) * 0.01, "pelvis_t": torch.zeros(N, 3),
        "seg_t": seg_t, "seg_p": torch.randint(0, 7, seg_t.shape, generator=g),
        "coco": to_tensors(gt, dets), "coco_images": sorted(im["id"] for im in gt["images"]),
    }


def make_metrics() -> dict:
    return {"mpjpe": MPJPE(), "pa_mpjpe": PAMPJPE(), "pve": PVE(), "pve_pelvis": PVE(alignment="pelvis"),
            "pve_pa": PVE(alignment="procrustes"), "per_iter": PerIterationMPJPE(3),
            "seg": SegmentationScores(7), "kp_ap": KeypointAP()}


def run_metrics(data: dict, rank: int | None) -> dict:
    """Update every metric with this rank's share (rank None = all data, one process); compute."""
    sel = torch.arange(N) if rank is None else (torch.arange(18) if rank == 0 else torch.arange(18, N))
    m = make_metrics()
    for chunk in torch.split(sel, 5):                      # several batches per rank
        m["mpjpe"].update(data["pred"][chunk], data["target"][chunk])
        m["pa_mpjpe"].update(data["pred"][chunk], data["target"][chunk])
        m["pve"].update(data["verts_p"][chunk], data["verts_t"][chunk])
        m["pve_pelvis"].update(data["verts_p"][chunk], data["verts_t"][chunk], data["pelvis_p"][chunk], data["pelvis_t"][chunk])
        m["pve_pa"].update(data["verts_p"][chunk], data["verts_t"][chunk])
        m["per_iter"].update([p[chunk] for p in data["iters"]], data["target"][chunk])
        m["seg"].update(data["seg_p"][chunk], data["seg_t"][chunk])
    images = torch.tensor(data["coco_images"])
    if rank is not None:                                   # images split 2:1 between the ranks
        images = images[images.numel() // 3:] if rank == 0 else images[:images.numel() // 3]
    c = data["coco"]
    for batch in torch.split(images, 4):
        d = torch.isin(c["det_image_ids"], batch)
        g = torch.isin(c["gt_image_ids"], batch)
        m["kp_ap"].update(c["det_image_ids"][d], c["det_keypoints"][d], c["det_scores"][d], c["gt_image_ids"][g],
                          c["gt_keypoints"][g], c["gt_areas"][g], c["gt_boxes"][g], c["gt_iscrowd"][g],
                          c["gt_num_keypoints"][g])
    return {name: metric.compute() for name, metric in m.items()}


def _worker(rank: int, port: int, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD)
    try:
        torch.save(run_metrics(make_data(), rank), Path(out_dir) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def assert_same(got, want, name: str) -> None:
    if isinstance(want, dict):
        assert set(got) == set(want), name
        for k in want:
            assert_same(got[k], want[k], f"{name}.{k}")
    else:
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-9, equal_nan=True, msg=name)


def test_two_ranks_equal_one_process(tmp_path):
    mp.spawn(_worker, args=(free_port(), str(tmp_path)), nprocs=WORLD, join=True)
    single = run_metrics(make_data(), None)
    assert set(single) == set(make_metrics())
    for rank in range(WORLD):
        synced = torch.load(tmp_path / f"rank{rank}.pt")
        for name in single:
            assert_same(synced[name], single[name], f"rank{rank}:{name}")
    assert 0 < float(single["kp_ap"]["AP"]) < 1
