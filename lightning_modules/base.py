"""``MeshRecoveryModule``: the LightningModule HMR, PyMAF and BiGraph share. A model is a network, a loss and
the evaluation metrics, composed here; a model's module only says which network and which loss:

    class HMRModule(MeshRecoveryModule):
        def build_network(self) -> nn.Module:   # image (B, 3, H, W) [, joints_2d (B, 12, 2)] -> Prediction
            ...
        def build_loss(self) -> ModelLoss:      # (batch, prediction, decoder) -> weighted terms
            ...

Everything else reads top to bottom below:
- ``forward(batch)``: the uint8 image normalised with ImageNet's mean and std on the model's device, plus,
  for a network with ``takes_joints_2d`` (BiGraph), the RoI joints of ``roi_joints`` (``RoIJointSource``)
  and, outside training, which of them are missing; returns the network's ``Prediction``
  (``lightning_modules.prediction``).
- ``check_evaluation_sets`` (at fit and validation start): what each evaluation set needs from the data is
  there, or the run stops in one line: a BiGraph set without any detected joint (unless
  ``data.eval.<set>.allow_missing_detections``), a COCO set without its ground truth (``annotations``).
- ``training_step``: the loss's weighted terms, their sum optimised, each logged as ``train/<term>``.
- ``validation_step`` / ``on_validation_epoch_end``: each evaluation set's ``ProtocolMetrics``
  (``lightning_modules.evaluation``, the protocol from the set's name), logged as ``val/<set>/<key>``
  (``evaluation.metric_values``) and kept in ``last_rows`` (``make eval`` writes them).
- ``predict_step``: the final mesh, joints, keypoints, SMPL parameters and camera (``BodyDecoder.final``).

Batches come from ``datamodules.mixed.MixedDataModule`` (``datamodules.augment.prepare_sample``).
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import pytorch_lightning as pl
import torch
from torch import Tensor, nn

from body.camera import IMAGENET_MEAN, IMAGENET_STD, IMG_RES
from body.joints import SPIN49_TO_BIGRAPH12
from body.model import BodyModel
from configs.loader import complete_group
from lightning_modules.checkpoints import plain_data
from lightning_modules.decoding import BodyDecoder
from lightning_modules.evaluation import CocoAnnotations, ProtocolMetrics, metric_values
from lightning_modules.parametric import ModelLoss
from lightning_modules.prediction import Prediction
from metrics.protocols import protocol_of_set

OPTIMIZERS = ("adam", "adamw")


class RoIJointSource(nn.Module):
    """The 2D joints (B, 12, 2) a joint-taking network (BiGraph) centres its RoIs on.

    Validation and prediction use the batch's detected joints (``bigraph_joints_2d``). In training a share
    ``gt_ratio`` of the samples use their ground-truth 2D joints where labelled (``callbacks.GTJointMixing``
    decays the share to zero by the last epoch; it starts at ``model.gt_joint_ratio``).

    A detected joint with confidence 0 is missing (no detection, or none converted): it is placed at the box
    centre, (0, 0) in normalised input coordinates, never at its stored zeros (a far corner, whose RoI reads
    exactly-zero features). In evaluation and prediction the network then moves it to the RoI centre of its
    own estimate of that joint (``missing`` tells it which; ``BiGraphSystem``); in training (our choice, no
    second pass) a missing joint takes the ground truth where it is labelled, else stays at the box centre.
    """

    def __init__(self, gt_ratio: float):
        super().__init__()
        self.gt_ratio = float(gt_ratio)

    @staticmethod
    def missing(batch: Mapping[str, Any]) -> Tensor:
        """(B, 12) bool: the detected joints with confidence 0."""
        return batch["bigraph_joints_2d"][..., 2] <= 0

    def forward(self, batch: Mapping[str, Any]) -> Tensor:
        missing = self.missing(batch)
        detected = batch["bigraph_joints_2d"][..., :2].masked_fill(missing[..., None], 0.0)
        if not self.training:
            return detected
        gt = batch["keypoints_2d"][:, SPIN49_TO_BIGRAPH12]
        pick = torch.rand(detected.shape[0], 1, device=detected.device) < self.gt_ratio
        use_gt = (pick | missing) & (gt[..., 2] > 0)
        return torch.where(use_gt[..., None], gt[..., :2], detected)


class MeshRecoveryModule(pl.LightningModule):
    """Shared LightningModule (module docstring).

    ``final_mesh_suffix``: the key suffix of the model's final mesh in the evaluation rows ("" for HMR and
    PyMAF, "_np" for BiGraph; ``Prediction.mesh_suffixes``), for the checkpoint monitor.

    Args:
        model: the model config (``configs/model/*.yaml``, checked by ``configs/schema.py``).
        optim: ``{"name": "adam", "lr": ..., "weight_decay": 0, "betas": [0.9, 0.999]}`` (default: the model's).
        body: ``{"name": "open"|"smpl", "gender": "neutral", "smpl_dir": null}``.
        eval_sets: names of the validation loaders, in order (``MixedDataModule.eval_names``); each set's
            protocol comes from its name (``metrics.protocols.protocol_of_set``).
        img_res: network input side in pixels.
    """

    final_mesh_suffix: str = ""

    def __init__(self, model: Mapping[str, Any], optim: Mapping[str, Any] | None = None,
                 body: Mapping[str, Any] | None = None, eval_sets: Sequence[str] = (), img_res: int = IMG_RES):
        super().__init__()
        # Saved in checkpoints as plain containers, so that they load weights-only (lightning_modules/checkpoints.py).
        # Every key present (configs/loader.complete_group: the model's and body's YAML under the given values,
        # checked by their schemas), so the code below reads settings without defaults of its own.
        model = complete_group("model", plain_data(model, "model"), "model config")
        optim = complete_group("model", {"name": model["name"], "optim": plain_data(optim or {}, "optim")},
                               "optim config")["optim"] if optim else model["optim"]
        body = complete_group("body", plain_data(body or {"name": "open"}, "body"), "body config")
        eval_sets = plain_data(list(eval_sets), "eval_sets")
        self.save_hyperparameters()
        self.model_cfg, self.optim_cfg = model, optim
        self.body = BodyModel.from_config(body["name"], body["gender"], body["smpl_dir"])
        self.body.requires_grad_(False)
        self.img_res = int(img_res)
        self.decoder = BodyDecoder(self.body, self.img_res)
        self.register_buffer("pixel_mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1) * 255.0, persistent=False)
        self.register_buffer("pixel_std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1) * 255.0, persistent=False)
        self.net = self.build_network()
        self.criterion = self.build_loss()
        self.roi_joints = RoIJointSource(model["gt_joint_ratio"]) if getattr(self.net, "takes_joints_2d", False) \
            else None
        self.configure_evaluation(list(eval_sets))

    # ------------------------------------------------------------------------------------------
    # What a model provides
    # ------------------------------------------------------------------------------------------
    def build_network(self) -> nn.Module:
        raise NotImplementedError(f"{type(self).__name__} must implement build_network()")

    def build_loss(self) -> ModelLoss:
        raise NotImplementedError(f"{type(self).__name__} must implement build_loss()")

    # ------------------------------------------------------------------------------------------
    # The flow
    # ------------------------------------------------------------------------------------------
    def configure_evaluation(self, eval_sets: Sequence[str], protocols: Mapping[str, str] | None = None) -> None:
        """One ``ProtocolMetrics`` per evaluation set (``protocols`` overrides the protocol of a set's name)."""
        protocols = dict(protocols or {})
        self.eval_sets = list(eval_sets)
        takes_joints = self.roi_joints is not None
        self.evaluators = nn.ModuleList([ProtocolMetrics(self.decoder, protocols.get(name) or protocol_of_set(name),
                                                         None, takes_joints) for name in self.eval_sets])
        self._sets_checked = False
        self.last_rows: dict[str, dict[str, Any]] = {}

    def normalize(self, img: Tensor) -> Tensor:
        """(B, 3, H, W) uint8 (or float in [0, 255]) -> ImageNet-normalised float."""
        return (img.to(self.pixel_mean.dtype) - self.pixel_mean) / self.pixel_std

    def forward(self, batch: Mapping[str, Any]) -> Prediction:
        image = self.normalize(batch["img"])
        if self.roi_joints is None:
            return self.net(image)
        joints = self.roi_joints(batch)
        missing = None if self.training else self.roi_joints.missing(batch)
        # Exporting: always the masked form (whether a joint is missing is data, which an exported graph cannot branch on).
        if missing is None or (not torch.compiler.is_exporting() and not bool(missing.any())):
            return self.net(image, joints)
        return self.net(image, joints, missing)

    def on_fit_start(self) -> None:
        self.check_evaluation_sets()

    def on_validation_start(self) -> None:
        self.check_evaluation_sets()

    def check_evaluation_sets(self) -> None:
        """When a run starts, once: each evaluation set's data-side facts from the data module. A joint-taking
        model refuses a set whose detected joints are all missing, unless its ``allow_missing_detections``
        is set (``MixedDataModule.detections_status``; the override is recorded in the row); a COCO-protocol
        set reads its official annotations, or refuses to start without them where its samples carry no
        ground truth of their own (``MixedDataModule.coco_annotations``). One line each."""
        if getattr(self, "_sets_checked", False):
            return
        data = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        if data is None or not hasattr(data, "detections_status"):
            return
        files: dict[str, CocoAnnotations] = {}
        for name, evaluator in zip(self.eval_sets, self.evaluators):
            if self.roi_joints is not None:
                evaluator.missing_detections_allowed = data.detections_status(name)
            if evaluator.protocol == "coco":
                path = data.coco_annotations(name)
                if path is not None and path not in files:
                    files[path] = CocoAnnotations.from_json(path, f"data.eval.{name}.annotations")
                evaluator.coco = files.get(path) if path is not None else None
        self._sets_checked = True

    def training_step(self, batch: Mapping[str, Any], batch_idx: int) -> Tensor:
        terms = self.criterion(batch, self(batch), self.decoder)
        loss = torch.stack(list(terms.values())).sum()
        bs = batch["img"].shape[0]
        self.log("train/loss", loss, prog_bar=True, batch_size=bs)
        for name, value in terms.items():
            self.log(f"train/{name}", value.detach(), batch_size=bs)
        return loss

    def validation_step(self, batch: Mapping[str, Any], batch_idx: int, dataloader_idx: int = 0) -> None:
        if "img" in batch:   # a batch of only skipped samples carries no image
            self.evaluators[dataloader_idx].update(batch, self(batch))

    def on_validation_epoch_end(self) -> None:
        # Rows are over all ranks already (ProtocolMetrics.row): every rank logs the same values.
        for name, evaluator in zip(self.eval_sets, self.evaluators):
            row = evaluator.row()
            self.last_rows[name] = row
            for key, value in metric_values(row).items():
                self.log(f"val/{name}/{key}", float(value), sync_dist=True)   # equal on every rank: a no-op mean
            evaluator.reset()

    def predict_step(self, batch: Mapping[str, Any], batch_idx: int, dataloader_idx: int = 0) -> dict[str, Tensor]:
        """vertices (B, V, 3), joints_3d (B, 24, 3), keypoints_2d (B, 49, 2) normalised, pose_rotmat
        (B, 24, 3, 3), betas (B, 10), cam (B, 3), all detached."""
        final = self.decoder.final(self(batch))
        return {k: v.detach() for k, v in final.items() if k != "keypoints49_3d"}

    def configure_optimizers(self):
        cfg = self.optim_cfg
        name = str(cfg["name"]).lower()
        if name not in OPTIMIZERS:
            raise ValueError(f"optim.name {name!r}: valid choices are {', '.join(OPTIMIZERS)}")
        cls = torch.optim.Adam if name == "adam" else torch.optim.AdamW
        params = [p for p in self.parameters() if p.requires_grad]
        return cls(params, lr=float(cfg["lr"]), weight_decay=float(cfg["weight_decay"]), betas=tuple(cfg["betas"]))
