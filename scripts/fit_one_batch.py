"""Learning sanity check: train a model on ONE fixed training batch and print its losses as they fall.

A model, its losses and its labels that can fit what they are shown drive the loss of a single batch close to
zero within a few hundred steps; one that cannot has a bug (labels that contradict each other, a detached
branch, a loss that does not reach the parameters). Used by reports/reproduction_investigation.md.

    python -m runtime.launch scripts/fit_one_batch.py --lr 1e-4 --steps 200 model=hmr data.batch_size=16 \
        data.img_res=112 model.backbone.width=16
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--every", type=int, default=25, help="print the losses every N steps")
    parser.add_argument("overrides", nargs="*", help="make train's key=value arguments (model=..., data.*)")
    args = parser.parse_args()

    import torch
    from omegaconf import OmegaConf

    from configs.loader import compose
    from datamodules.mixed import MixedDataModule
    from lightning_modules.registry import build_module

    cfg = compose("train", args.overrides)
    torch.manual_seed(int(cfg.seed))
    data = MixedDataModule({**OmegaConf.to_container(cfg.data, resolve=True), "num_workers": 0})
    module = build_module(OmegaConf.to_container(cfg.model, resolve=True), OmegaConf.to_container(cfg.body, resolve=True),
                          data.eval_names, data.img_res)
    optimiser = torch.optim.Adam(module.parameters(), lr=args.lr)
    logged: dict[str, float] = {}
    module.log = lambda name, value, **_: logged.__setitem__(name, float(value))   # outside a Trainer
    batch = next(iter(data.train_dataloader()))
    for step in range(args.steps):
        loss = module.training_step(batch, step)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        if step % args.every == 0 or step == args.steps - 1:
            terms = {k.removeprefix("train/"): round(v, 4) for k, v in logged.items()
                     if k.startswith("train/") and k not in ("train/lr", "train/samples_per_s", "train/data_share")}
            print(step, terms, flush=True)


if __name__ == "__main__":
    main()
