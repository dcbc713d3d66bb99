"""Typed schemas of every config group, checked when a config is composed (``configs.loader.compose``).

The YAML files hold the values (they read like the papers' tables and are the one place for defaults:
a field without a default here is ``???``, mandatory, and its YAML sets it); these dataclasses hold the
keys and their types. Composing merges each group's YAML, the ablation row and the command-line overrides
into its schema (omegaconf's structured configs), so a misspelt key anywhere (``model.net.fusion_graf``) or a
value of the wrong type (``data.batch_size=abc``) stops the run in one line that names the valid keys or the
expected type. Fields with defaults here are optional settings a YAML need not mention (a Lightning Trainer
argument left to Lightning's own default is ``None``).

BiGraph's ``net`` group is the network's own settings dataclass (``BiGraphConfig``), whose defaults are the
paper's; it is imported when a BiGraph config is composed.
"""
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from omegaconf import MISSING


# --- body, logger, optimiser ------------------------------------------------------------------------------
@dataclass
class BodyConfig:
    name: str = MISSING                 # open | smpl (body/assets.py)
    gender: str = MISSING               # neutral | male | female
    smpl_dir: Optional[str] = MISSING   # the licensed SMPL folder (body=smpl)


@dataclass
class LoggerConfig:
    name: str = MISSING                 # csv | wandb | none
    project: Optional[str] = None       # W&B project (wandb)
    offline: Optional[bool] = None      # W&B: null = offline when no credentials are found


@dataclass
class OptimConfig:
    name: str = MISSING                 # adam | adamw
    lr: float = MISSING
    weight_decay: float = 0.0
    betas: List[float] = field(default_factory=lambda: [0.9, 0.999])


# --- models -----------------------------------------------------------------------------------------------
@dataclass
class BackboneConfig:
    weights: Optional[str] = MISSING    # a torchvision-format ImageNet ResNet-50 .pth, or null
    width: int = MISSING                # 64 = ResNet-50 (smaller only for quick CPU runs and tests)


@dataclass
class ModelConfig:
    """What every model has: its name, backbone, loss weights, optimiser and own callbacks."""

    name: str = MISSING
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    openpose_weight: float = MISSING
    loss_weights: Dict[str, float] = MISSING
    optim: OptimConfig = field(default_factory=OptimConfig)
    callbacks: List[str] = field(default_factory=list)


@dataclass
class HMRConfig(ModelConfig):
    n_iter: int = MISSING               # IEF iterations
    supervise: str = MISSING            # all | last


@dataclass
class PyMAFConfig(ModelConfig):
    n_levels: int = MISSING
    feedback: str = MISSING             # mesh_aligned | grid | global (Table 4)
    pyramid: bool = MISSING
    aux: str = MISSING                  # iuv | part_seg | none (Table 5)
    regressor_input: str = MISSING      # features | part_seg | dense_corr | masked_features (Table 5)
    init_features: Optional[str] = MISSING   # grid | mesh | null (Table 6)
    deconv_channels: int = MISSING
    mesh_forward: str = MISSING         # downsampled | full


def _bigraph_net_config() -> Any:
    from lightning_modules.nets.bigraph_net import BiGraphConfig
    return BiGraphConfig


def model_schema(name: str) -> Any:
    """The schema of model ``name`` (hmr | pymaf | bigraph), or None for an unknown name."""
    if name == "hmr":
        return HMRConfig
    if name == "pymaf":
        return PyMAFConfig
    if name == "bigraph":
        net_config = _bigraph_net_config()

        @dataclass
        class BiGraphModelConfig(ModelConfig):
            gt_joint_ratio: float = MISSING      # ground-truth RoI joint share at epoch 0 (callback decays it)
            skeleton_3d_loss: str = MISSING      # focal | l1 (Table 5's "w/o FL")
            focal_alpha: float = MISSING
            focal_gamma: float = MISSING
            net: net_config = field(default_factory=net_config)  # type: ignore[valid-type]

        return BiGraphModelConfig
    return None


# --- data -------------------------------------------------------------------------------------------------
@dataclass
class SourceConfig:
    shards: str = MISSING               # a glob or brace pattern under data.root
    weight: float = 1.0                 # the source's share of the mixture (normalised over sources)


@dataclass
class EvalSetConfig:
    shards: str = MISSING
    allow_missing_detections: bool = False   # BiGraph: evaluate a set without detected 2D joints (recorded in the row)
    annotations: Optional[str] = None        # COCO protocol: COCO's person_keypoints_val2014.json (the ground truth)


@dataclass
class TrainDataConfig:
    epoch_samples: int = MISSING
    sources: Dict[str, SourceConfig] = MISSING


@dataclass
class AugmentSchema:
    enabled: bool = MISSING
    rotation_deg: float = MISSING
    rotation_zero_prob: float = MISSING
    scale: float = MISSING
    noise: float = MISSING
    flip_prob: float = MISSING


@dataclass
class DataConfig:
    name: str = MISSING
    root: str = MISSING
    train: TrainDataConfig = field(default_factory=TrainDataConfig)
    eval: Dict[str, EvalSetConfig] = field(default_factory=dict)
    batch_size: int = MISSING
    eval_batch_size: int = MISSING
    num_workers: int = MISSING
    worker_start: str = MISSING         # forkserver | spawn | fork (datamodules/mixed.py)
    img_res: int = MISSING
    shuffle_buffer: int = MISSING
    seed: int = MISSING
    augment: AugmentSchema = field(default_factory=AugmentSchema)


# --- trainer ----------------------------------------------------------------------------------------------
@dataclass
class TrainerConfig:
    """Lightning ``Trainer`` arguments; ``None`` leaves one to Lightning's default (``trainer_kwargs``)."""

    accelerator: str = MISSING
    devices: Any = MISSING              # a count, -1 (all), or a list of device ids
    precision: str = MISSING            # 32-true | bf16-mixed | 16-mixed
    max_epochs: int = MISSING
    log_every_n_steps: int = MISSING
    num_nodes: Optional[int] = None
    strategy: Optional[str] = None
    sync_batchnorm: Optional[bool] = None
    max_steps: Optional[int] = None
    limit_train_batches: Any = None     # a count or a fraction
    limit_val_batches: Any = None
    val_check_interval: Any = None
    check_val_every_n_epoch: Optional[int] = None
    num_sanity_val_steps: Optional[int] = None
    accumulate_grad_batches: Optional[int] = None
    gradient_clip_val: Optional[float] = None
    deterministic: Any = None
    benchmark: Optional[bool] = None
    enable_progress_bar: Optional[bool] = None


def trainer_kwargs(trainer: Dict[str, Any]) -> Dict[str, Any]:
    """The Trainer arguments a resolved trainer group sets (those left ``None`` are Lightning's defaults)."""
    return {k: v for k, v in trainer.items() if v is not None}


# --- roots ------------------------------------------------------------------------------------------------
@dataclass
class TrainRoot:
    model: Any = None                   # the model's schema (model_schema), set when composing
    data: DataConfig = field(default_factory=DataConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    body: BodyConfig = field(default_factory=BodyConfig)
    seed: int = MISSING
    out_dir: str = MISSING
    run_name: Optional[str] = MISSING
    ablation: Optional[str] = MISSING
    callbacks: List[str] = MISSING
    checkpoint_minutes: Optional[float] = MISSING   # last.ckpt also every N minutes of training (callbacks/registry.py)
    ckpt_path: Optional[str] = MISSING
    experiment: Optional[str] = MISSING       # a paper recipe of configs/experiment/ (configs.loader)
    init_weights: Optional[str] = MISSING     # a checkpoint whose model weights start the run (not a resume)
    allow_nonpaper_setup: bool = MISSING      # real data without ImageNet weights or licensed SMPL (configs/guards.py)


@dataclass
class ExperimentConfig:
    """A paper recipe (``configs/experiment/<name>.yaml``): group choices and values over the root's."""

    description: str = MISSING
    groups: Dict[str, str] = field(default_factory=dict)      # group -> choice (model, data, trainer, ...)
    values: Dict[str, Any] = field(default_factory=dict)      # nested values merged after the groups


@dataclass
class EvalRoot:
    data: DataConfig = field(default_factory=DataConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    ckpt: Optional[str] = MISSING
    model: Optional[str] = MISSING
    sets: str = MISSING
    protocol: Optional[str] = MISSING
    out: Optional[str] = MISSING


@dataclass
class ShowDataRoot:
    data: DataConfig = field(default_factory=DataConfig)
    body: BodyConfig = field(default_factory=BodyConfig)
    out: str = MISSING
    per_source: int = MISSING


@dataclass
class DataStatsRoot:
    data: DataConfig = field(default_factory=DataConfig)
    draws: int = MISSING


@dataclass
class ShowBodyRoot:
    body: BodyConfig = field(default_factory=BodyConfig)
    out: str = MISSING
    image_size: int = MISSING


# The schema of each group but ``model`` (whose schema its ``name`` picks: model_schema), whatever root uses it.
GROUPS: Dict[str, Any] = {"data": DataConfig, "trainer": TrainerConfig, "logger": LoggerConfig, "body": BodyConfig}

@dataclass
class SlurmRoot:
    """``make slurm``: the sbatch script's resources (configs/slurm.yaml)."""

    nodes: int = MISSING
    gpus: int = MISSING                 # per node; 0 = a CPU job
    tasks: int = MISSING                # processes per node of a CPU job
    cpus_per_task: int = MISSING
    time: str = MISSING
    partition: Optional[str] = MISSING
    account: Optional[str] = MISSING
    mem: Optional[str] = MISSING
    signal_seconds: int = MISSING
    script: Optional[str] = MISSING
    submit: bool = MISSING
    ablations: Optional[List[str]] = None   # a job array over ablations x seeds (one task per pair)
    seeds: Optional[List[int]] = None


ROOTS: Dict[str, Any] = {"train": TrainRoot, "eval": EvalRoot, "show_data": ShowDataRoot,
                         "data_stats": DataStatsRoot, "show_body": ShowBodyRoot, "slurm": SlurmRoot}
