"""The reproduction report's figures (PNG, matplotlib): BiGraph's Fig. 5 and PyMAF's Fig. 11 in miniature.

- :func:`loss_curve_figure`: training losses of runs (mean over seeds, ± standard-error band), one panel per loss.
- :func:`iteration_figure`: evaluation samples, each as the input, the mesh after each iteration over it, and
  the ground-truth mesh (PyMAF's Fig. 11 layout), drawn with the suite's rasteriser (``callbacks.overlays``).
"""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import torch

LOSS_PANELS = (("mesh_joints_3d", "3D joints of the mesh branch (mesh_joints_3d)"),
               ("vertices", "mesh vertices (vertices)"))
CURVE_COLOURS = {"bigraph": "tab:blue", "mesh_only": "tab:orange"}   # as BiGraph's Fig. 5


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")   # files only: no display
    import matplotlib.pyplot as plt

    return plt


def logged_losses(run_dir: Path, key: str) -> tuple[np.ndarray, np.ndarray]:
    """(steps, values) of ``train/<key>`` in a run's CSV log (``<run dir>/metrics.csv``), in step order."""
    path = Path(run_dir) / "metrics.csv"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no training log (make reproduce trains with logger=csv)")
    steps, values = [], []
    with path.open(newline="") as f:
        for row in csv.DictReader(f):
            value = row.get(f"train/{key}", "")
            if value not in ("", None):
                steps.append(int(row["step"]))
                values.append(float(value))
    if not values:
        raise ValueError(f"{path}: no train/{key} column; is this a BiGraph run?")
    order = np.argsort(steps, kind="stable")
    return np.asarray(steps)[order], np.asarray(values)[order]


def moving_average(values: np.ndarray, window: int) -> np.ndarray:
    """(N,) -> (N,) mean of the last ``window`` values at each point (fewer at the start)."""
    sums = np.cumsum(np.concatenate([[0.0], values]))
    ends = np.arange(1, len(values) + 1)
    starts = np.maximum(0, ends - window)
    return (sums[ends] - sums[starts]) / (ends - starts)


def loss_curve_figure(run_dirs: Mapping[str, Sequence[Path]], labels: Mapping[str, str], out: Path) -> Path:
    """One panel per loss of :data:`LOSS_PANELS`; per run name, the seeds' smoothed curves' mean ± s.e."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(LOSS_PANELS), figsize=(11, 4), dpi=110)
    for ax, (key, title) in zip(axes, LOSS_PANELS):
        for name, dirs in run_dirs.items():
            curves = [logged_losses(d, key) for d in dirs]
            length = min(len(v) for _, v in curves)
            steps = curves[0][0][:length]
            window = max(1, length // 15)
            smooth = np.stack([moving_average(v[:length], window) for _, v in curves])
            mean = smooth.mean(0)
            se = smooth.std(0, ddof=1) / np.sqrt(len(curves)) if len(curves) > 1 else np.zeros_like(mean)
            colour = CURVE_COLOURS.get(name)
            ax.plot(steps, mean, color=colour, label=labels.get(name, name))
            ax.fill_between(steps, mean - se, mean + se, color=colour, alpha=0.25, linewidth=0)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("optimiser step")
        ax.set_ylabel("training loss (L1)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)
    return out


def evaluation_batch(data_root: str, set_name: str, img_res: int, count: int) -> dict:
    """The first ``count`` samples of an evaluation set, as validation reads them (one batch)."""
    from configs.loader import compose
    from datamodules.mixed import MixedDataModule
    from omegaconf import OmegaConf

    data_cfg = OmegaConf.to_container(compose("eval", [f"data.root={data_root}"]).data, resolve=True)
    data_cfg.update(img_res=img_res, eval_batch_size=count, num_workers=0)
    data_cfg["eval"] = {set_name: data_cfg["eval"][set_name]}
    data = MixedDataModule(data_cfg)
    data.setup("validate")
    return next(iter(data.val_dataloader()[0]))


def ground_truth_camera(batch: Mapping, decoder, img_res: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(vertices (B, V, 3), weak-perspective cam (B, 3)) of the batch's ground-truth mesh, placed by the
    translation that best projects its SPIN-24 joints onto the 2D ground truth (as PyMAF's IUV targets)."""
    from body.camera import FOCAL_LENGTH, translation_to_weak_perspective
    from lightning_modules.pymaf import crop_translation

    gt = decoder.ground_truth_mesh(batch)
    vertices = batch["vertices"] if "vertices" in batch else gt["vertices"]
    transl = crop_translation(gt["joints_3d"], batch["keypoints_2d"][:, 25:], img_res)
    return vertices, translation_to_weak_perspective(transl, FOCAL_LENGTH, img_res)


@torch.no_grad()
def iteration_figure(ckpt: Path, data_root: str, set_name: str, count: int, out: Path) -> Path:
    """Rows of evaluation samples: input | mesh after each iteration (M0 = the start) | ground truth."""
    from callbacks.overlays import mesh_over_photo
    from lightning_modules.registry import load_module

    plt = _pyplot()
    module = load_module(str(ckpt))
    batch = evaluation_batch(data_root, set_name, module.img_res, count)
    prediction = module(batch)
    estimates = ([prediction.initial] if prediction.initial is not None else []) + list(prediction.iterations)
    first = 0 if prediction.initial is not None else 1
    photo = batch["img"].float() / 255.0
    faces = module.body.faces
    columns = [("input", photo)]
    for t, estimate in enumerate(estimates):
        decoded = module.decoder.decode(estimate)
        columns.append((f"M{first + t}", mesh_over_photo(photo, decoded["vertices"], decoded["cam"], faces,
                                                         module.img_res)))
    gt_vertices, gt_cam = ground_truth_camera(batch, module.decoder, module.img_res)
    columns.append(("ground truth", mesh_over_photo(photo, gt_vertices, gt_cam, faces, module.img_res)))
    n = photo.shape[0]
    fig, axes = plt.subplots(n, len(columns), figsize=(1.6 * len(columns), 1.6 * n), dpi=110, squeeze=False)
    for row in range(n):
        for col, (title, images) in enumerate(columns):
            ax = axes[row][col]
            ax.imshow(images[row].permute(1, 2, 0).clamp(0, 1).numpy())
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(title, fontsize=9)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)
    return out
