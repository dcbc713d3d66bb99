"""Ground truth from the body model, for files without 3D joints (3DPW).

The 3DPW protocol of SPIN / PyMAF (``eval.py``) poses the *gendered* SMPL model ('m' -> male, else
female) with the file's pose and betas, without translation, regresses H36M-17 joints from the
vertices with ``J_regressor_h36m``, and subtracts their pelvis (H36M joint 0). We store:

- ``vertices`` (V, 3): camera axes (the pose's global orientation is camera-frame), *no translation*:
  the mesh where the body model puts it for transl = 0 (not pelvis-centred; SPIN/PyMAF compare PVE
  between meshes in this frame);
- ``joints_3d`` (24, 4): those H36M-17 joints minus their pelvis, at SPIN's H36M slots of the 24-joint
  layout (``keypoints.h36m17_to_j24``), so MPJPE reads them exactly like H36M's ``S``.

With ``body=open`` only a neutral model exists: it is used for every gender (the sample's ``gender``
field still says what the person is), and its betas are the open model's own shape space, so 3DPW's
SMPL betas give a different body: fine for running the pipeline, not for reporting 3DPW numbers.
"""
from __future__ import annotations

import numpy as np
import torch

from body.model import BodyModel
from datamodules.convert.keypoints import h36m17_to_j24

OPEN_BODY_NOTE = ("--body open has only a neutral body model: 3dpw vertices and joints_3d use it for every "
                  "gender (the gender field is kept); use --body smpl --smpl-dir DIR for the gendered 3DPW protocol")


class BodyGroundTruth:
    """Vertices and 3D joints of SMPL parameters, by gender; body models are loaded on first use.

    Args:
        body: "open" (neutral only, used for every gender) or "smpl" (SMPL_{NEUTRAL,MALE,FEMALE}.pkl).
        smpl_dir: folder of the licensed files for ``body="smpl"`` (else ``SMPL_DIR``).
    """

    def __init__(self, body: str = "open", smpl_dir: str | None = None):
        self.body, self.smpl_dir = body, smpl_dir
        self._models: dict[str, BodyModel] = {}

    def model_gender(self, gender: str) -> str:
        """The body model used for a person of ``gender`` ('male' | 'female' | 'neutral')."""
        return "neutral" if self.body == "open" else gender

    def load(self, genders) -> None:
        """Load the models that persons of ``genders`` need (raises BodyAssetError when files are missing)."""
        for g in sorted(set(genders)):
            self._model(g)

    def _model(self, gender: str) -> BodyModel:
        g = self.model_gender(gender)
        if g not in self._models:
            self._models[g] = BodyModel.from_config(self.body, gender=g, smpl_dir=self.smpl_dir).eval()
        return self._models[g]

    @torch.no_grad()
    def __call__(self, pose: np.ndarray, betas: np.ndarray, gender: str) -> tuple[np.ndarray, np.ndarray]:
        """pose (72,) axis-angle, betas (10,), gender -> vertices (V, 3) float32, joints_3d (24, 4) float32."""
        model = self._model(gender)
        p = torch.as_tensor(np.asarray(pose, dtype=np.float32)).reshape(1, 72)
        b = torch.as_tensor(np.asarray(betas, dtype=np.float32)).reshape(1, 10)
        vertices = model(b, p[:, 3:], p[:, :3]).vertices
        joints17 = model.h36m17(vertices)[0].double().numpy()
        return vertices[0].numpy().astype(np.float32), h36m17_to_j24(joints17).astype(np.float32)
