"""BiGraph's schedule for the RoI centres: ground-truth vs detected 2D joints during training.

The paper trains the skeleton branch with RoIs around a mix of ground-truth and estimated 2D joints whose
ground-truth share decays to zero by the last epoch, so the model meets detector errors before it is
tested on detected joints only. Linear decay (paper silent on the shape; our choice): at the start of epoch
e of E the share is start * (1 - e / (E - 1)) (start at epoch 0, zero at the last epoch).
"""
from __future__ import annotations

import pytorch_lightning as pl


def gt_joint_ratio(epoch: int, max_epochs: int, start: float = 1.0) -> float:
    """Ground-truth share at ``epoch`` (0-based) of ``max_epochs``: linear from ``start`` to 0 at the last."""
    if max_epochs <= 1:
        return 0.0
    return max(0.0, start * (1.0 - epoch / (max_epochs - 1)))


class GTJointMixing(pl.Callback):
    """Sets the ground-truth share of the module's RoI joints (``pl_module.roi_joints.gt_ratio``,
    ``lightning_modules.base.RoIJointSource``) at every training epoch start; modules whose network takes
    no joints (``roi_joints`` None) are left alone."""

    def __init__(self, start: float = 1.0):
        self.start = float(start)

    def _set(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> float | None:
        source = getattr(pl_module, "roi_joints", None)
        if source is None:
            return None
        source.gt_ratio = gt_joint_ratio(trainer.current_epoch, int(trainer.max_epochs or 1), self.start)
        return source.gt_ratio

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """A run resumed inside an epoch starts without that epoch's ``on_train_epoch_start``: set its share here."""
        self._set(trainer, pl_module)

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._set(trainer, pl_module)

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch, batch_idx: int) -> None:
        """Logged with every step, like the learning rate (an epoch-level value would be missing from the log of
        an epoch a run resumed into)."""
        source = getattr(pl_module, "roi_joints", None)
        if source is not None:
            pl_module.log("train/gt_joint_ratio", float(source.gt_ratio), on_step=True, on_epoch=False)
