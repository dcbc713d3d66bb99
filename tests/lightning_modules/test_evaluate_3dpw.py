"""3DPW against gendered ground truth, end to end: the converter poses the male / female body model by each
person's gender, and the protocol scores PVE and MPJPE against that mesh (PyMAF ``eval.py``), not the neutral one.

Only the neutral open body exists here, so the test's "male" and "female" models are the open body with a
shape offset of their own (a different body for the same pose and betas, which is what a gendered model is
to the protocol); the converter's gendered path is the one ``--body smpl`` takes.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from body.model import BodyModel
from datamodules.convert import body_gt
from datamodules.streams import EvalStream, shard_sample_counts
from lightning_modules.decoding import BodyDecoder
from lightning_modules.evaluation import ProtocolMetrics
from lightning_modules.prediction import Estimate, Prediction
from body.rotations import axis_angle_to_rotmat
from runtime.errors import UserError
from tests.datamodules.spin_fixtures import make_spin_file, run, shard_paths

SHAPE_OFFSET = {"male": torch.tensor([1.5, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
                "female": torch.tensor([-1.0, 1.2, 0, 0, 0, 0, 0, 0, 0, 0]), "neutral": torch.zeros(10)}
H36M_TO_LSP14_BY_HAND = [6, 5, 4, 1, 2, 3, 16, 15, 14, 11, 12, 13, 8, 10]


class GenderedBody(torch.nn.Module):
    """The open body with a per-gender shape offset, standing in for SMPL_MALE / SMPL_FEMALE."""

    def __init__(self, body: BodyModel, gender: str):
        super().__init__()
        self.body, self.offset = body, SHAPE_OFFSET[gender]

    def forward(self, betas, body_pose, global_orient):
        return self.body(betas + self.offset, body_pose, global_orient)

    def h36m17(self, vertices):
        return self.body.h36m17(vertices)


@pytest.fixture(scope="module")
def body():
    return BodyModel.from_config("open").eval()


def neutral_mesh(body, pose, betas, offset=None):
    pose = torch.as_tensor(pose, dtype=torch.float32)[None]
    betas = torch.as_tensor(betas, dtype=torch.float32)[None]
    with torch.no_grad():
        return body(betas + (0 if offset is None else offset), pose[:, 3:], pose[:, :3]).vertices[0]


def lsp14(body, vertices):
    h36m = body.h36m17(vertices[None])[0]
    return h36m[H36M_TO_LSP14_BY_HAND] - h36m[0]


def test_3dpw_pve_and_mpjpe_use_the_gendered_mesh(tmp_path, monkeypatch, body):
    d = make_spin_file(tmp_path, "3dpw", n=4)            # genders m, f, x (unknown: neutral), m
    monkeypatch.setattr(body_gt.BodyModel, "from_config",
                        lambda name, gender="neutral", smpl_dir=None: GenderedBody(body, gender))
    report, samples = run(tmp_path, "3dpw", split="test", body="smpl", smpl_dir=str(tmp_path))
    assert [s.gender for s in samples] == ["male", "female", "neutral", "male"]
    urls = shard_paths(tmp_path / "out", "3dpw")
    batch = next(iter(EvalStream("3dpw", urls, shard_sample_counts(urls), batch_size=4, out_res=64)))
    decoder = BodyDecoder(body, 64)
    # The prediction: the neutral body on the ground-truth pose and shape (what an oracle on the neutral
    # model predicts), so scored against the neutral mesh every error would be 0.
    rotmat = axis_angle_to_rotmat(batch["pose"].reshape(-1, 24, 3))
    prediction = Prediction(iterations=[Estimate(pose_rotmat=rotmat, betas=batch["betas"],
                                                 cam=torch.tensor([1.0, 0.0, 0.0]).expand(4, 3))])
    metrics = ProtocolMetrics(decoder, "3dpw")
    metrics.update(batch, prediction)
    row = metrics.row()["columns"]

    # Independent computation: numpy/torch by hand from the npz's pose, betas and genders.
    gendered = {"m": "male", "f": "female"}
    pve, err, pve_neutral = [], [], []
    for i in range(4):
        gt = neutral_mesh(body, d["pose"][i], d["shape"][i, :10], SHAPE_OFFSET[gendered.get(d["gender"][i], "neutral")])
        pred = neutral_mesh(body, d["pose"][i], d["shape"][i, :10])
        pve.append((pred - gt).norm(dim=-1).mean())
        pve_neutral.append((pred - pred).norm(dim=-1).mean())
        err.append((lsp14(body, pred) - lsp14(body, gt)).norm(dim=-1).mean())
    expected_pve = 1000 * float(torch.stack(pve).mean())
    assert row["pve"] == pytest.approx(expected_pve, abs=2e-3)
    assert row["mpjpe"] == pytest.approx(1000 * float(torch.stack(err).mean()), abs=2e-3)
    assert expected_pve > 5.0 and 1000 * float(torch.stack(pve_neutral).mean()) == 0.0   # the neutral one differs

    # A male / female 3DPW sample without its stored mesh cannot be scored by the neutral model: one line.
    no_mesh = {**batch, "has_vertices": torch.zeros(4, dtype=torch.bool)}
    with pytest.raises(UserError) as info:
        ProtocolMetrics(decoder, "3dpw").update(no_mesh, prediction)
    assert "is male but has no ground-truth vertices" in str(info.value) and "\n" not in str(info.value)
    assert report["written"] == 4


def test_h36m_joints_come_from_s_even_with_a_mosh_fit(body):
    """H36M P1/P2: S scores the joints whenever the sample has it, also when it carries SMPL parameters (MoSh)."""
    decoder = BodyDecoder(body, 64)
    pose = torch.zeros(2, 72)
    pose[:, 0] = np.pi
    batch = {"pose": pose, "betas": torch.zeros(2, 10), "has_smpl": torch.tensor([True, True]),
             "has_3d": torch.tensor([True, False]), "joints_3d": torch.zeros(2, 24, 4), "img": torch.zeros(2, 3, 8, 8)}
    batch["joints_3d"][0, :, :3] = torch.randn(24, 3) * 0.3
    batch["joints_3d"][0, :, 3] = 1.0
    targets = decoder.evaluation_targets(batch)
    j = batch["joints_3d"][0]
    lsp_slots = list(range(13)) + [18]      # LSP-14 of the 24-joint layout (head top from H36M's head)
    assert targets["index"].tolist() == [0, 1]   # sample 0 by its S, sample 1 by its mesh
    torch.testing.assert_close(targets["joints"][0], j[lsp_slots, :3] - j[14, :3])
    mesh = neutral_mesh(body, pose[1], torch.zeros(10))
    torch.testing.assert_close(targets["joints"][1], lsp14(body, mesh), atol=1e-6, rtol=0)
    assert targets["smpl_index"].tolist() == [0, 1]   # PVE against the (neutral) mesh where there is one
