"""``pymaf``: PyMAF (Zhang et al., ICCV 2021) on the shared base.

Network: ``nets.pymaf_net.PyMAFNet`` with the config's switches (``feedback``, ``pyramid``, ``aux``,
``init_features``, ``n_levels``: the paper's Tables 4-6). Loss (``PyMAFLoss``): the parametric terms of every
level (``parametric``; PyMAF's code supervises each level), plus the auxiliary IUV terms on samples with SMPL
ground truth: the ground-truth IUV map is rendered at the head's resolution (56 x 56) from the ground-truth
mesh, placed with the translation that best projects its joints onto the ground-truth 2D keypoints
(f = 5000, principal point at the crop centre; SPIN's ``estimate_translation``, whose least squares weight
each joint's residuals by the square root of its confidence), as PyMAF's code does. The mesh rendered is the
body's chart-split IUV mesh (``body/iuv_mesh.py``: DensePose's charts when ``UV_Processed.mat`` is found,
else the suite's), one flat (I, U, V) per face as PyMAF's ``IUV_Renderer``.
"""
from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import Tensor, nn

from body.camera import FOCAL_LENGTH, estimate_translation, normalized_to_pixels
from body.raster import rasterize
from body.render import face_iuv_map
from lightning_modules.base import MeshRecoveryModule
from lightning_modules.decoding import BodyDecoder
from lightning_modules.hmr import build_backbone
from lightning_modules.nets.iuv_head import iuv_losses
from lightning_modules.nets.pymaf_net import PyMAFNet
from lightning_modules.parametric import ModelLoss, ParametricLoss
from lightning_modules.prediction import Prediction


def crop_translation(joints: Tensor, keypoints_2d: Tensor, img_res: int) -> Tensor:
    """(B, 3) translation that places body-frame ``joints`` (B, N, 3) onto the crop's 2D ground truth
    ``keypoints_2d`` (B, N, 3: normalised crop coordinates + confidence) through the crop's f = 5000 camera
    (principal point at the centre): each joint's residuals weighted by sqrt(confidence), as PyMAF's
    ``estimate_translation_np`` (``W = diag(sqrt(conf))`` on the rows of its linear system)."""
    pixels = normalized_to_pixels(keypoints_2d[..., :2], img_res)
    centre = torch.full((joints.shape[0], 2), img_res / 2.0, dtype=joints.dtype, device=joints.device)
    return estimate_translation(joints, pixels, FOCAL_LENGTH, centre, keypoints_2d[..., 2].clamp(min=0).sqrt())


def render_gt_iuv(body, vertices: Tensor, joints: Tensor, keypoints_2d: Tensor, img_res: int, out_res: int) -> Tensor:
    """(B, 3, out_res, out_res) IUV images of ground-truth meshes seen by the crop's f = 5000 camera.

    Args:
        vertices: (B, V, 3) body-model vertices without translation; joints: (B, 24, 3) their SPIN-24 joints.
        keypoints_2d: (B, 24, 3) ground-truth 2D joints, normalised crop coordinates + confidence.
    Returns:
        channel 0 the part index (0 background), 1 and 2 U and V (``body.render.face_iuv_map``).

    The translation is :func:`crop_translation` (rows weighted by sqrt(confidence), as PyMAF's
    ``estimate_translation_np``).
    """
    transl = crop_translation(joints, keypoints_2d, img_res)
    cam_pts = (vertices + transl[:, None])[:, body.iuv_vertex_map]           # the chart-split mesh's vertices
    k = out_res / img_res  # the same camera at the head's resolution
    xy = FOCAL_LENGTH * k * cam_pts[..., :2] / cam_pts[..., 2:3] + out_res / 2.0
    frags = rasterize(torch.cat([xy, cam_pts[..., 2:]], -1), body.iuv_faces, (out_res, out_res))
    return face_iuv_map(frags, body.iuv_face_iuv.to(dtype=vertices.dtype, device=vertices.device))


class PyMAFLoss(ParametricLoss):
    """The parametric terms of every level plus, with the auxiliary head, ``iuv_index`` (part index cross
    entropy), ``iuv_coarse`` (15-class coarse-part cross entropy) and, with U / V, ``iuv_uv`` (the U and V smooth
    L1 sums, added) against the ground-truth IUV map (module docstring) on samples with SMPL ground truth;
    ``nets.iuv_head.iuv_losses`` has the reductions. PyMAF's weights: 1, 1, 0.5."""

    def terms(self, batch: Mapping[str, Any], prediction: Prediction, decoder: BodyDecoder) -> dict[str, Tensor]:
        terms = super().terms(batch, prediction, decoder)
        if prediction.iuv is not None:
            valid = batch["has_smpl"].bool()
            with torch.no_grad():
                gt = decoder.ground_truth_mesh(batch)
                res = prediction.iuv["index"].shape[-1]
                gt_iuv = render_gt_iuv(decoder.body, gt["vertices"], gt["joints_3d"], batch["keypoints_2d"][:, 25:],
                                       decoder.img_res, res)
            aux = iuv_losses(prediction.iuv, gt_iuv, valid, decoder.body.iuv_coarse_of_part)
            terms["iuv_index"] = aux["index"]
            if "coarse" in aux:
                terms["iuv_coarse"] = aux["coarse"]
            if "u" in aux:
                terms["iuv_uv"] = aux["u"] + aux["v"]
        return terms


class PyMAFModule(MeshRecoveryModule):
    def build_network(self) -> nn.Module:
        c = self.model_cfg
        return PyMAFNet(build_backbone(c), self.body, n_levels=int(c["n_levels"]), feedback=str(c["feedback"]),
                        pyramid=bool(c["pyramid"]), aux=str(c["aux"]), init_features=c["init_features"],
                        deconv_channels=int(c["deconv_channels"]), mesh_forward=str(c["mesh_forward"]),
                        regressor_input=str(c["regressor_input"]))

    def build_loss(self) -> ModelLoss:
        return PyMAFLoss(self.model_cfg, supervise="all")   # PyMAF's code supervises every level
