"""Named everyday poses, written by hand as per-joint axis-angle rotations (SMPL frame: y up, +z forward,
+x the body's left). No pip package ships motion-capture poses, so the pose library is ours.

Rotation cues in this frame: a hip rotation of -a about x swings the leg forward; +a about x at the knee
bends it; at the shoulders, -a about z lowers the left arm and +a about z lowers the right arm; -a about y
swings the left arm forward (+a for the right); +a about x at the spine bends the torso forward; +a about
z at the spine bends it towards the body's right. About x at a shoulder twists the arm around its own axis:
+a (either side) turns a bent forearm of a hanging arm inwards, in front of the body; -a turns the forearm
of a raised arm upwards (waving). Every pose here lies within the joint limits of
``datamodules.synthetic.limits`` (a test checks it).
"""
from __future__ import annotations

import math

import torch

from body.joints import SMPL_JOINT_NAMES

_R = math.radians

# joint name -> (x, y, z) axis-angle in radians
NAMED_POSES: dict[str, dict[str, tuple[float, float, float]]] = {
    "t_pose": {},
    "standing": {
        "left_shoulder": (0.0, 0.0, _R(-70)), "right_shoulder": (0.0, 0.0, _R(70)),
        "left_elbow": (0.0, _R(-15), 0.0), "right_elbow": (0.0, _R(15), 0.0),
    },
    "walking": {
        "left_hip": (_R(-28), 0.0, 0.0), "right_hip": (_R(20), 0.0, 0.0),
        "left_knee": (_R(10), 0.0, 0.0), "right_knee": (_R(35), 0.0, 0.0),
        "right_ankle": (_R(-10), 0.0, 0.0),
        "left_shoulder": (0.0, _R(18), _R(-72)), "right_shoulder": (0.0, _R(18), _R(72)),
        "left_elbow": (0.0, _R(-20), 0.0), "right_elbow": (0.0, _R(25), 0.0),
        "spine1": (_R(4), 0.0, 0.0),
    },
    "sitting": {
        "left_hip": (_R(-85), 0.0, _R(5)), "right_hip": (_R(-85), 0.0, _R(-5)),
        "left_knee": (_R(90), 0.0, 0.0), "right_knee": (_R(90), 0.0, 0.0),
        "left_shoulder": (0.0, _R(-20), _R(-65)), "right_shoulder": (0.0, _R(20), _R(65)),
        "left_elbow": (0.0, _R(-70), 0.0), "right_elbow": (0.0, _R(70), 0.0),
    },
    "reaching": {
        "right_shoulder": (0.0, 0.0, _R(-60)), "right_elbow": (0.0, _R(10), 0.0),
        "left_shoulder": (0.0, _R(-75), _R(-10)),
        "spine1": (_R(10), 0.0, 0.0), "spine2": (_R(8), 0.0, 0.0),
        "left_hip": (_R(-10), 0.0, 0.0), "right_knee": (_R(8), 0.0, 0.0),
    },
    "bending": {
        "spine1": (_R(30), 0.0, 0.0), "spine2": (_R(25), 0.0, 0.0), "spine3": (_R(15), 0.0, 0.0),
        "left_hip": (_R(-35), 0.0, 0.0), "right_hip": (_R(-35), 0.0, 0.0),
        "left_knee": (_R(30), 0.0, 0.0), "right_knee": (_R(30), 0.0, 0.0),
        "left_shoulder": (0.0, _R(-40), _R(-60)), "right_shoulder": (0.0, _R(40), _R(60)),
    },
    "running": {
        "left_hip": (_R(-60), 0.0, 0.0), "left_knee": (_R(80), 0.0, 0.0),
        "right_hip": (_R(20), 0.0, 0.0), "right_knee": (_R(95), 0.0, 0.0), "right_ankle": (_R(25), 0.0, 0.0),
        "left_shoulder": (0.0, _R(35), _R(-72)), "left_elbow": (0.0, _R(-85), 0.0),
        "right_shoulder": (0.0, _R(50), _R(72)), "right_elbow": (0.0, _R(95), 0.0),
        "spine1": (_R(12), 0.0, 0.0), "spine2": (_R(5), 0.0, 0.0),
    },
    "waving": {
        "right_shoulder": (_R(-80), 0.0, _R(-10)), "right_elbow": (0.0, _R(100), 0.0),
        "left_shoulder": (0.0, 0.0, _R(-72)), "left_elbow": (0.0, _R(-15), 0.0),
        "head": (0.0, _R(-10), 0.0),
    },
    "crouching": {
        "left_hip": (_R(-110), 0.0, _R(12)), "right_hip": (_R(-110), 0.0, _R(-12)),
        "left_knee": (_R(135), 0.0, 0.0), "right_knee": (_R(135), 0.0, 0.0),
        "left_ankle": (_R(-20), 0.0, 0.0), "right_ankle": (_R(-20), 0.0, 0.0),
        "spine1": (_R(25), 0.0, 0.0), "spine2": (_R(10), 0.0, 0.0),
        "left_shoulder": (0.0, _R(-50), _R(-55)), "right_shoulder": (0.0, _R(50), _R(55)),
        "left_elbow": (0.0, _R(-50), 0.0), "right_elbow": (0.0, _R(50), 0.0),
    },
    "lunging": {
        "left_hip": (_R(-85), 0.0, 0.0), "left_knee": (_R(90), 0.0, 0.0), "left_ankle": (_R(-10), 0.0, 0.0),
        "right_hip": (_R(25), 0.0, 0.0), "right_knee": (_R(40), 0.0, 0.0), "right_ankle": (_R(30), 0.0, 0.0),
        "spine1": (_R(-5), 0.0, 0.0),
        "left_shoulder": (0.0, 0.0, _R(-75)), "right_shoulder": (0.0, 0.0, _R(75)),
        "left_elbow": (0.0, _R(-20), 0.0), "right_elbow": (0.0, _R(20), 0.0),
    },
    "arms_crossed": {
        "left_shoulder": (_R(60), _R(-40), _R(-75)), "right_shoulder": (_R(60), _R(40), _R(75)),
        "left_elbow": (0.0, _R(-110), 0.0), "right_elbow": (0.0, _R(110), 0.0),
    },
    "hands_on_hips": {
        "left_shoulder": (_R(60), _R(20), _R(-50)), "right_shoulder": (_R(60), _R(-20), _R(50)),
        "left_elbow": (0.0, _R(-100), 0.0), "right_elbow": (0.0, _R(100), 0.0),
        "left_hip": (0.0, 0.0, _R(6)), "right_hip": (0.0, 0.0, _R(-6)),
    },
    "kneeling": {
        "left_hip": (_R(-90), 0.0, 0.0), "left_knee": (_R(90), 0.0, 0.0),
        "right_hip": (_R(5), 0.0, 0.0), "right_knee": (_R(95), 0.0, 0.0), "right_ankle": (_R(-20), 0.0, 0.0),
        "left_shoulder": (0.0, _R(-20), _R(-70)), "right_shoulder": (0.0, _R(10), _R(72)),
        "left_elbow": (0.0, _R(-60), 0.0), "right_elbow": (0.0, _R(20), 0.0),
    },
    "jumping": {
        "left_hip": (0.0, 0.0, _R(30)), "right_hip": (0.0, 0.0, _R(-30)),
        "left_knee": (_R(15), 0.0, 0.0), "right_knee": (_R(15), 0.0, 0.0),
        "left_ankle": (_R(30), 0.0, 0.0), "right_ankle": (_R(30), 0.0, 0.0),
        "left_shoulder": (0.0, 0.0, _R(50)), "right_shoulder": (0.0, 0.0, _R(-50)),
        "left_elbow": (0.0, _R(-10), 0.0), "right_elbow": (0.0, _R(10), 0.0),
    },
    "cheering": {
        "left_shoulder": (0.0, _R(-10), _R(75)), "right_shoulder": (0.0, _R(10), _R(-75)),
        "left_elbow": (0.0, _R(-25), 0.0), "right_elbow": (0.0, _R(25), 0.0),
        "neck": (_R(-15), 0.0, 0.0),
    },
    "phone_call": {
        "right_shoulder": (_R(-20), _R(35), _R(65)), "right_elbow": (0.0, _R(140), 0.0),
        "right_wrist": (0.0, 0.0, _R(-30)),
        "left_shoulder": (0.0, 0.0, _R(-72)), "left_elbow": (0.0, _R(-10), 0.0),
        "head": (0.0, 0.0, _R(-8)),
    },
    "pointing": {
        "left_shoulder": (0.0, _R(-85), _R(-5)), "left_elbow": (0.0, _R(-5), 0.0),
        "right_shoulder": (0.0, 0.0, _R(72)), "right_elbow": (0.0, _R(15), 0.0),
        "neck": (0.0, _R(10), 0.0),
    },
    "kicking": {
        "right_hip": (_R(-80), 0.0, 0.0), "right_knee": (_R(25), 0.0, 0.0), "right_ankle": (_R(20), 0.0, 0.0),
        "left_knee": (_R(10), 0.0, 0.0), "spine1": (_R(-10), 0.0, 0.0),
        "left_shoulder": (0.0, _R(10), _R(-35)), "right_shoulder": (0.0, _R(-10), _R(35)),
    },
    "throwing": {
        "right_shoulder": (_R(-70), _R(-20), _R(-5)), "right_elbow": (0.0, _R(90), 0.0),
        "left_shoulder": (0.0, _R(-70), _R(-20)), "left_elbow": (0.0, _R(-20), 0.0),
        "spine1": (0.0, _R(-15), 0.0), "spine2": (0.0, _R(-10), 0.0),
        "left_hip": (_R(-30), 0.0, 0.0), "left_knee": (_R(15), 0.0, 0.0), "right_knee": (_R(20), 0.0, 0.0),
    },
    "side_stretch": {
        "spine1": (0.0, 0.0, _R(12)), "spine2": (0.0, 0.0, _R(12)), "spine3": (0.0, 0.0, _R(8)),
        "left_shoulder": (0.0, 0.0, _R(75)), "left_elbow": (0.0, _R(-20), 0.0),
        "right_shoulder": (0.0, 0.0, _R(80)), "right_elbow": (0.0, _R(10), 0.0),
        "left_hip": (0.0, 0.0, _R(8)), "right_hip": (0.0, 0.0, _R(-8)),
    },
    "sitting_cross_legged": {
        "left_hip": (_R(-60), _R(40), _R(30)), "right_hip": (_R(-60), _R(-40), _R(-30)),
        "left_knee": (_R(145), 0.0, 0.0), "right_knee": (_R(145), 0.0, 0.0),
        "spine1": (_R(10), 0.0, 0.0),
        "left_shoulder": (0.0, _R(-30), _R(-65)), "right_shoulder": (0.0, _R(30), _R(65)),
        "left_elbow": (0.0, _R(-40), 0.0), "right_elbow": (0.0, _R(40), 0.0),
    },
    "texting": {
        "left_shoulder": (_R(30), _R(-15), _R(-75)), "right_shoulder": (_R(30), _R(15), _R(75)),
        "left_elbow": (0.0, _R(-115), 0.0), "right_elbow": (0.0, _R(115), 0.0),
        "neck": (_R(25), 0.0, 0.0), "head": (_R(15), 0.0, 0.0),
    },
}


def named_pose(name: str) -> torch.Tensor:
    """(24, 3) axis-angle body pose (global orientation row 0 is identity) for a named pose."""
    if name not in NAMED_POSES:
        raise ValueError(f"unknown pose {name!r}: valid names are {', '.join(NAMED_POSES)}")
    pose = torch.zeros(24, 3)
    for joint, aa in NAMED_POSES[name].items():
        pose[SMPL_JOINT_NAMES.index(joint)] = torch.tensor(aa)
    return pose
