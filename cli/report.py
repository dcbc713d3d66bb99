"""``reports/reproduction.md`` from a ``make reproduce`` record: the papers' tables, the claims, the figures.

The record (``<out_dir>/<scale>/reproduce.json``, ``cli.reproduce``) names every run and its evaluation JSON
(``make eval``'s). From them this module writes, in the papers' layouts, every metric as mean ± standard error
over the seeds (``metrics.seeds``) beside the mean-pose baseline on the same samples; the check that every
model's MPJPE and PVE are under half the mean pose's; each claim with the gap of its seed means and that gap's
standard error (a claim holds when the gap exceeds two of them); the figures (``cli.report_figures``); and the
per-seed numbers as JSON next to the report. Rewriting the report from the same record gives the same file. A
hand-written ``<report stem>_investigation.md`` beside the report (why a claim does not hold, what was tried) is
appended verbatim.

    python -m cli.report outputs/reproduce/cpu/reproduce.json [reports/reproduction.md]
"""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from metrics.seeds import Comparison, compare_independent, compare_paired, seed_estimate
from runtime.cli import run_cli
from runtime.errors import UserError

HEADERS = {"mpjpe": "MPJPE", "pa_mpjpe": "PA-MPJPE", "pve": "PVE", "mpve": "PVE"}
SET_NAMES = {"h36m": "H36M", "3dpw": "3DPW", "up3d": "UP-3D"}
ERROR_KEYS = {"h36m": ("mpjpe", "pa_mpjpe"), "3dpw": ("mpjpe", "pa_mpjpe", "pve"), "up3d": ("mpve",)}
FIGURE_DIR = "figures"


@dataclass
class Results:
    """Per-seed values of every run: ``metric(run, set, key)`` -> [value per seed], in seed order."""

    record: dict
    runs: dict[str, dict]                 # name -> the record's row (model, label, ...)
    per_seed: dict[str, list[dict]]       # name -> [eval JSON per seed]
    mean_pose: dict[str, dict[str, float]]

    def metric(self, run: str, set_name: str, key: str) -> list[float]:
        values = [e["sets"][set_name]["metrics"].get(key) for e in self.per_seed[run]]
        if any(v is None for v in values):
            raise UserError(f"{run}: evaluation set {set_name} has no {key!r} in every seed's JSON")
        return [float(v) for v in values]

    def has(self, run: str, set_name: str, key: str) -> bool:
        return run in self.per_seed and all(key in e["sets"].get(set_name, {}).get("metrics", {})
                                            for e in self.per_seed[run])

    def suffixes(self, run: str) -> list[str]:
        """The meshes a run's protocols score: [""] or ["_np", "_p"] (BiGraph)."""
        first = self.per_seed[run][0]["sets"]
        keys = next(iter(first.values()))["metrics"]
        return ["_np", "_p"] if any(k.endswith("_np") for k in keys) else [""]


def load_results(record: dict) -> Results:
    """Read every run's evaluation JSON named by the record."""
    runs, per_seed = {}, {}
    for row in record["runs"]:
        path = Path(row["eval"])
        if not path.is_file():
            raise UserError(f"{path}: missing; rerun make reproduce (it trains and evaluates what is missing)")
        runs.setdefault(row["name"], row)
        per_seed.setdefault(row["name"], []).append(json.loads(path.read_text()))
    first = next(iter(per_seed.values()))[0]
    return Results(record, runs, per_seed, first.get("mean_pose", {}))


def cell(values: Sequence[float]) -> str:
    return str(seed_estimate(values))


def metric_columns(record: dict) -> list[tuple[str, str]]:
    """(set, key) of every error the report tabulates, in the record's set order."""
    return [(s, k) for s in record["eval_sets"] for k in ERROR_KEYS.get(s, ())]


def results_table(res: Results, rows: Sequence[tuple[str, str, str]]) -> str:
    """Markdown: the mean-pose row, then ``(label, run, mesh suffix)`` rows; every error column of the sets."""
    columns = metric_columns(res.record)
    head = "| | " + " | ".join(f"{SET_NAMES.get(s, s)} {HEADERS[k]}" for s, k in columns) + " |"
    lines = [head, "|---" * (len(columns) + 1) + "|"]
    lines.append("| Mean pose (Θ₀ for every image) | " + " | ".join(
        f"{res.mean_pose[s][k]:.1f}" for s, k in columns) + " |")
    for label, run, suffix in rows:
        lines.append(f"| {label} | " + " | ".join(cell(res.metric(run, s, k + suffix)) for s, k in columns) + " |")
    return "\n".join(lines)


def iteration_table(res: Results, runs: Sequence[str], set_name: str) -> str:
    """Markdown in PyMAF's Table 6 layout: MPJPE and PA-MPJPE after each iteration (M0 = the mean-pose start)."""
    labels = [k.split("_")[-1] for k in res.per_seed[runs[0]][0]["sets"][set_name]["metrics"] if k.startswith("mpjpe_M")]
    lines = ["| Model | Metric | " + " | ".join(labels) + " |", "|---|---|" + "---|" * len(labels)]
    for run in runs:
        for key in ("mpjpe", "pa_mpjpe"):
            if not res.has(run, set_name, f"{key}_{labels[-1]}"):
                continue
            lines.append(f"| {res.runs[run]['label']} | {HEADERS[key]} | " +
                         " | ".join(cell(res.metric(run, set_name, f"{key}_{m}")) for m in labels) + " |")
    return "\n".join(lines)


def half_mean_pose_check(res: Results) -> tuple[bool, str]:
    """Every run's (and mesh's) MPJPE and PVE under half the mean pose's, per set: (all hold, markdown table)."""
    checked = [(s, k) for s, k in metric_columns(res.record) if k in ("mpjpe", "pve", "mpve")]
    lines = ["| Model | " + " | ".join(f"{SET_NAMES.get(s, s)} {HEADERS[k]} / mean pose" for s, k in checked) + " |",
             "|---" * (len(checked) + 1) + "|"]
    every = True
    for run, row in res.runs.items():
        for suffix in res.suffixes(run):
            cells = []
            for s, k in checked:
                ratio = seed_estimate(res.metric(run, s, k + suffix)).mean / res.mean_pose[s][k]
                every &= ratio < 0.5
                cells.append(f"{ratio:.2f}" + ("" if ratio < 0.5 else " **(not under 0.5)**"))
            mesh = {"_np": " (np)", "_p": " (p)"}.get(suffix, "")
            lines.append(f"| {row['label']}{mesh} | " + " | ".join(cells) + " |")
    return every, "\n".join(lines)


@dataclass
class Claim:
    """A paper's claim as comparisons "lower < higher" that must all hold."""

    text: str
    source: str
    comparisons: list[tuple[str, Comparison]]

    @property
    def holds(self) -> bool:
        return all(c.holds for _, c in self.comparisons)


def mean_logged_loss(run_dir: Path, key: str) -> float:
    """Mean of one run's logged training loss ``train/<key>`` over the run (lower: it fell sooner)."""
    from cli.report_figures import logged_losses

    return float(logged_losses(run_dir, key)[1].mean())


def claims(res: Results) -> list[Claim]:
    """The issue's claims, each on the papers' ablation set (H36M; UP-3D PVE for BiGraph as its Table 4)."""
    out = []

    def between(label, low_run, high_run, set_name, key, low_suffix="", high_suffix=""):
        return (label, compare_independent(res.metric(low_run, set_name, key + low_suffix),
                                           res.metric(high_run, set_name, key + high_suffix)))

    if res.has("pymaf", "h36m", "mpjpe_M3"):
        m = {i: res.metric("pymaf", "h36m", f"mpjpe_M{i}") for i in (1, 2, 3)}
        out.append(Claim("PyMAF's MPJPE decreases from M1 to M3", "PyMAF Table 6",
                         [("H36M MPJPE M2 < M1", compare_paired(m[2], m[1])),
                          ("H36M MPJPE M3 < M2", compare_paired(m[3], m[2]))]))
    out.append(Claim("PyMAF beats the Baseline on MPJPE", "PyMAF Tables 4, 5",
                     [between("H36M MPJPE: PyMAF < Baseline", "pymaf", "baseline", "h36m", "mpjpe")]))
    out.append(Claim("Mesh-aligned feedback beats grid feedback", "PyMAF Table 4 (pyramid, 3 regressors)",
                     [between("H36M MPJPE: mesh-aligned < grid", "pymaf_no_aux", "pymaf_grid", "h36m", "mpjpe"),
                      between("H36M PA-MPJPE: mesh-aligned < grid", "pymaf_no_aux", "pymaf_grid", "h36m", "pa_mpjpe")]))
    out.append(Claim("The auxiliary dense-correspondence supervision helps", "PyMAF Table 5",
                     [between("H36M MPJPE: with < without", "pymaf", "pymaf_no_aux", "h36m", "mpjpe"),
                      between("H36M PA-MPJPE: with < without", "pymaf", "pymaf_no_aux", "h36m", "pa_mpjpe")]))
    out.append(Claim("BiGraph beats the mesh-only graph", "BiGraph Table 4 (A vs D), np mesh",
                     [between("H36M MPJPE: BiGraph < mesh-only", "bigraph", "mesh_only", "h36m", "mpjpe", "_np", "_np"),
                      between("UP-3D PVE: BiGraph < mesh-only", "bigraph", "mesh_only", "up3d", "mpve", "_np", "_np")]))
    losses = []
    for key in ("mesh_joints_3d", "vertices"):
        per_run = {run: [mean_logged_loss(Path(r["run_dir"]), key) for r in res.record["runs"] if r["name"] == run]
                   for run in ("bigraph", "mesh_only")}
        losses.append((f"mean training loss `{key}` over the run: BiGraph < mesh-only",
                       compare_independent(per_run["bigraph"], per_run["mesh_only"])))
    out.append(Claim("BiGraph's `vertices` and `mesh_joints_3d` losses fall faster", "BiGraph Fig. 5", losses))
    return out


def claims_table(found: Sequence[Claim]) -> str:
    lines = ["| Claim (source) | Comparison | Gap of seed means | 2 s.e. | Holds |", "|---|---|---|---|---|"]
    for claim in found:
        for i, (label, c) in enumerate(claim.comparisons):
            first = f"{claim.text} ({claim.source})" if i == 0 else ""
            lines.append(f"| {first} | {label} | {c.gap:.3g} | {2 * c.se:.3g} | {'yes' if c.holds else '**no**'} |")
    return "\n".join(lines)


def learning_rates(record: dict) -> str:
    """Each model's learning rate, read from its runs' saved configs ("hmr 5e-05, pymaf 5e-05, bigraph 0.00025")."""
    from omegaconf import OmegaConf

    rates: dict[str, float] = {}
    for row in record["runs"]:
        saved = Path(row["run_dir"]) / "config.yaml"
        if row["model"] not in rates and saved.is_file():
            rates[row["model"]] = float(OmegaConf.load(saved).model.optim.lr)
    return ", ".join(f"{model} {lr:g}" for model, lr in rates.items())


def settings_table(record: dict) -> str:
    s = record["settings"]
    rows = [("Optimiser steps (every run)", s["steps"]), ("Batch", s["batch_size"]),
            ("Input size", f"{s['img_res']} x {s['img_res']} px"),
            ("Backbone", f"ResNet-50, stem width {s['backbone_width']} (the papers': 64), no ImageNet weights"),
            ("PyMAF deconvolutions", f"{s['deconv_channels']} channels (the paper's: 256; every PyMAF row)"),
            ("BiGraph graph widths", f"{s['graph_width']:g} x the paper's (both BiGraph rows)"),
            ("Learning rate (Adam)", "each paper's: " + learning_rates(record)),
            ("Seeds", ", ".join(str(x) for x in record["seeds"])),
            ("Training data", f"synthetic mixture ({record['data_root']}, make data SIZE={s['data_size']:g}), "
                              "H36M .3, UP-3D .2, LSP .1, COCO .2, MPII .2"),
            ("Evaluation", ", ".join(SET_NAMES.get(x, x) for x in record["eval_sets"]) + " synthetic sets, every sample")]
    return "| Setting | Value |\n|---|---|\n" + "\n".join(f"| {k} | {v} |" for k, v in rows)


def per_seed_json(res: Results) -> dict:
    """Every number the report is computed from, per run and seed."""
    return {"mean_pose": res.mean_pose,
            "runs": {name: {"label": res.runs[name]["label"], "model": res.runs[name]["model"],
                            "ablation": res.runs[name].get("ablation"),
                            "seeds": {str(r["seed"]): {s: v["metrics"] for s, v in e["sets"].items()}
                                      for r, e in zip([x for x in res.record["runs"] if x["name"] == name], evals)}}
                     for name, evals in res.per_seed.items()}}


def write_report(record: dict, report: Path, figure_samples: int = 4) -> Path:
    """Write the report, its figures (``<report dir>/figures/``) and per-seed JSON; returns the report's path."""
    from cli.report_figures import iteration_figure, loss_curve_figure

    res = load_results(record)
    report.parent.mkdir(parents=True, exist_ok=True)
    figures = report.parent / FIGURE_DIR
    figures.mkdir(exist_ok=True)
    stem = report.stem
    bigraph_dirs = {run: [Path(r["run_dir"]) for r in record["runs"] if r["name"] == run]
                    for run in ("bigraph", "mesh_only") if run in res.runs}
    loss_png = loss_curve_figure(bigraph_dirs, {k: res.runs[k]["label"] for k in bigraph_dirs},
                                 figures / f"{stem}_losses.png")
    pymaf_seed0 = next(r for r in record["runs"] if r["name"] == "pymaf")
    iter_png = iteration_figure(Path(pymaf_seed0["run_dir"]) / "checkpoints" / "last.ckpt", record["data_root"],
                                "3dpw" if "3dpw" in record["eval_sets"] else record["eval_sets"][0],
                                figure_samples, figures / f"{stem}_iterations.png")
    found = claims(res)
    under_half, half_table = half_mean_pose_check(res)
    pymaf_rows = [(res.runs[n]["label"], n, "") for n in ("baseline", "pymaf_grid", "pymaf_no_aux", "pymaf")]
    bigraph_rows = [(f"{res.runs[n]['label']} ({mesh})", n, suffix) for n in ("mesh_only", "bigraph")
                    for mesh, suffix in (("np", "_np"), ("p", "_p"))]
    minutes = record["seconds"] / 60
    held = sum(c.holds for c in found)
    text = f"""# Reproduction in miniature: PyMAF's and BiGraph's central claims on the synthetic mixture

Generated by `{record['command']}` (`cli/reproduce.py`, `cli/report.py`); every number in the tables and figures
comes from that run. {"The investigation at the end is written by hand (`" + stem + "_investigation.md`, appended)."
                      if (report.parent / f"{stem}_investigation.md").is_file() else ""}

| | |
|---|---|
| Git revision | `{record['git_revision']}` |
| Hardware | {record['hardware']} |
| Duration | {minutes:.1f} min ({len(record['runs'])} runs: training and `make eval`), finished {record['finished']} |
| Scale | `{record['scale']}` |

## What this shows, and what it does not

It shows the papers' mechanisms at work in this suite: every model is trained from scratch with the same
optimiser steps, batch, backbone width, input size and seeds, evaluated by `make eval` on the synthetic
evaluation sets, and compared with the papers' ablation rows. It does **not** reproduce the papers' numbers:
the data are synthetic renders of the open body model (not Human3.6M, 3DPW or UP-3D), the networks are reduced
(see the settings), there are no ImageNet weights, and the runs are short. Errors are in mm on the synthetic
sets named after the protocols that score them. Every value is the mean ± standard error over
{len(record['seeds'])} seeds; a claim holds when the gap of the seed means exceeds twice its standard error.
Per-seed numbers: [`{stem}.json`]({stem}.json).

{settings_table(record)}

## Claims: {held} of {len(found)} hold at this scale

{claims_table(found)}

Every model's MPJPE and PVE under half the mean pose's: **{'yes' if under_half else 'no'}** (ratios of seed means):

{half_table}

## PyMAF (Tables 4 and 5): feedback features and auxiliary supervision

{results_table(res, pymaf_rows)}

## PyMAF (Table 6): error after each iteration, H36M

M0 is the regressors' mean-pose start, M1..M3 the estimates after each feedback level (the Baseline's three IEF
iterations in its row).

{iteration_table(res, ['pymaf', 'pymaf_no_aux', 'pymaf_grid', 'baseline'], 'h36m')}

![PyMAF: image, then the mesh after each iteration]({FIGURE_DIR}/{iter_png.name})

*As PyMAF's Fig. 11: for {figure_samples} samples of the synthetic 3DPW set, the input, the mesh of each
iteration (M0 = the mean pose) over it, and the ground-truth mesh; PyMAF, seed {pymaf_seed0['seed']}.*

## BiGraph (Table 4): the bilayer graph against the mesh graph alone

np: the graph's non-parametric mesh; p: the SMPL parameters regressed from it.

{results_table(res, bigraph_rows)}

![Training losses of BiGraph and the mesh-only model]({FIGURE_DIR}/{loss_png.name})

*As BiGraph's Fig. 5: the training losses on the mesh branch's 3D joints (`mesh_joints_3d`, left) and vertices
(`vertices`, right), mean over seeds (band: ± standard error), smoothed over a window of logged steps.*

## Rerunning

`{record['command']}` retrains every run whose evaluation JSON is missing and rewrites this report; on the same
machine and software it gives the same numbers (training on the CPU is deterministic for a seed); elsewhere they
should agree within the seed spread above.
"""
    notes = report.parent / f"{stem}_investigation.md"     # written by hand after a run: why claims fail
    if notes.is_file():
        text += f"\n<!-- {notes.name}, written by hand after the run, follows verbatim -->\n\n" + notes.read_text()
    report.write_text(text)
    (report.parent / f"{stem}.json").write_text(json.dumps(per_seed_json(res), indent=2, sort_keys=True) + "\n")
    return report


def main(argv: list[str] | None = None) -> Path:
    argv = sys.argv[1:] if argv is None else argv
    if not argv:
        raise UserError("usage: python -m cli.report <out_dir>/<scale>/reproduce.json [report.md]")
    path = Path(argv[0])
    if not path.is_file():
        raise UserError(f"{path}: no such record; make reproduce writes it")
    out = write_report(json.loads(path.read_text()), Path(argv[1]) if len(argv) > 1 else Path("reports/reproduction.md"))
    print(f"wrote {out}")
    return out


if __name__ == "__main__":
    run_cli(main)
