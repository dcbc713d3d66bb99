"""Lightning callbacks of the suite (schedules, pictures, logging helpers)."""
from callbacks.gt_joint_mixing import GTJointMixing

__all__ = ["GTJointMixing"]
