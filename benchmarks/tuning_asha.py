"""Fair tuning: does per-variant ASHA find each arm's full-budget best for fewer epochs?

The ablation tunes every arm (attention variant) with the same candidate draws before it
compares the arms. Training every candidate to the full budget (FIFO) is the reference,
but costs samples x epochs per arm. Plain ASHA saves epochs but ranks all arms' candidates
against each other, so a weak arm can lose every candidate early and end with no
full-budget result: its row is then decided by the scheduler, not by the architecture.
Per-variant ASHA only stops a candidate against candidates of its own arm.

This script runs `mnist_attention` four times through the CLI with the same search seed
(a learning-rate search only): `--scheduler fifo`, `halving-per-variant` (synchronous
successive halving per arm), `asha-per-variant` (asynchronous, per arm) and `asha` (pooled).
It checks that the runs drew identical candidates, then reports per arm the best val_acc of
any full-budget tune candidate under FIFO and under each per-arm scheduler, the tune-stage
trial-epochs of each, and how many arms plain ASHA starved of a full-budget candidate.
Goal (issue): every arm within 0.5 points of its FIFO best, with at most 40% of the epochs.
The script reports whether the goals are met; it does not assert them.

    .venv/bin/python benchmarks/tuning_asha.py [--epochs 10] [--samples 9] [--out DIR] [--quick]
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import polars as pl

ROOT = Path(__file__).resolve().parents[1]
PRESET = "mnist_attention"
SCHEDULERS = ("fifo", "halving-per-variant", "asha-per-variant", "asha")
PER_ARM = ("halving-per-variant", "asha-per-variant")  # held to the goals below
LR_DOMAIN = "train.lr=loguniform(1e-4,3e-2)"
MAX_SHORTFALL_PTS = 0.5
MAX_EPOCH_RATIO = 0.40


def run(scheduler: str, args: argparse.Namespace, storage: Path) -> tuple[Path, float]:
    """One CLI run in its own storage; returns its run directory and wall time."""
    sets = [LR_DOMAIN, "model.reduction=8", "model.heads=4", f"train.epochs={args.epochs}"]
    if args.quick:
        sets.append("train.max_batches=20")
    cmd = [sys.executable, "-m", "orchestrator", "run", PRESET, "--samples", str(args.samples),
           "--seeds", "1", "--scheduler", scheduler, "--search-seed", str(args.search_seed),
           "--storage", str(storage), "--name", scheduler]
    for s in sets:
        cmd += ["--set", s]
    log = storage / f"{scheduler}.log"
    print(f"[{scheduler}] running, log {log}", flush=True)
    t0 = time.perf_counter()
    with log.open("w") as fh:
        proc = subprocess.run(cmd, cwd=ROOT, stdout=fh, stderr=subprocess.STDOUT, check=False)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"[{scheduler}] failed with exit status {proc.returncode}; see {log}")
    print(f"[{scheduler}] done in {wall:.1f} s", flush=True)
    return storage / PRESET / scheduler, wall


def load(run_dir: Path, samples: int) -> tuple[pl.DataFrame, dict[str, Any]]:
    """The run's tune-stage rows and meta.json; fails loudly if it tuned more than train.lr."""
    meta = json.loads((run_dir / "meta.json").read_text())
    domains = meta["protocol"]["domains"]
    if meta.get("state") != "finished":
        sys.exit(f"{run_dir}: run state {meta.get('state')!r}, not finished")
    if any(set(d) != {"train.lr"} for d in domains.values()):
        sys.exit(f"{run_dir}: expected only train.lr tuned, got {domains}")
    tune = pl.read_parquet(run_dir / "trials.parquet").filter(pl.col("stage") == "tune")
    if tune.height != samples * len(domains):
        sys.exit(f"{run_dir}: {tune.height} tune rows, expected {samples} x {len(domains)} arms")
    return tune, meta


def check_same_draws(tunes: dict[str, pl.DataFrame]) -> None:
    """Every run must have tried the same lr for every (variant, draw); exit if not."""
    keyed = {s: {(v, d): lr for v, d, lr in t.select("variant", "draw", "cfg.train.lr").iter_rows()}
             for s, t in tunes.items()}
    ref_name, ref = next(iter(keyed.items()))
    for name, draws in keyed.items():
        if draws != ref:
            diff = sorted(k for k in ref.keys() | draws.keys() if ref.get(k) != draws.get(k))
            sys.exit(f"FAIL: {name} drew different candidates from {ref_name} at (variant, draw) "
                     f"{diff[:5]}: {[(ref.get(k), draws.get(k)) for k in diff[:5]]}")
    print(f"same candidates: all {len(SCHEDULERS)} runs tried identical train.lr for all "
          f"{len(ref)} (variant, draw)")


def per_arm(tune: pl.DataFrame, full: int) -> dict[str, dict[str, Any]]:
    """Per arm: best val_acc among full-budget candidates, their count, tune trial-epochs."""
    out = {}
    for (arm,), rows in tune.group_by("variant"):
        done = rows.filter(pl.col("epochs_run") >= full)
        out[str(arm)] = {
            "best_full": done["best_val_acc"].max() if done.height else None,
            "n_full": done.height,
            "epochs": int(rows["epochs_run"].sum()),
        }
    return out


def fmt(x: float | None, spec: str = ".4f") -> str:
    return "—" if x is None else format(x, spec)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10, help="full budget (train.epochs)")
    parser.add_argument("--samples", type=int, default=9, help="tune candidates per arm")
    parser.add_argument("--search-seed", type=int, default=2026)
    parser.add_argument("--out", type=Path, help="keep the runs and results.json here")
    parser.add_argument("--quick", action="store_true",
                        help="fast check: 4 epochs of 20 batches (overrides --epochs)")
    args = parser.parse_args()
    if args.quick:
        args.epochs = 4

    tmp = None if args.out else tempfile.TemporaryDirectory(prefix="tuning_asha_")
    out = args.out or Path(tmp.name)  # type: ignore[union-attr]
    out.mkdir(parents=True, exist_ok=True)
    tunes, walls, selected = {}, {}, {}
    for s in SCHEDULERS:
        run_dir, walls[s] = run(s, args, out)
        tunes[s], meta = load(run_dir, args.samples)
        selected[s] = {arm: sel["draw"] for arm, sel in meta["selected"].items()}
    check_same_draws(tunes)

    stats = {s: per_arm(t, args.epochs) for s, t in tunes.items()}
    fifo, asha = stats["fifo"], stats["asha"]
    rows = []
    for arm in meta["protocol"]["domains"]:  # the preset's arm order
        row: dict[str, Any] = {"arm": arm, "fifo_best": fifo[arm]["best_full"],
                               "fifo_epochs": fifo[arm]["epochs"],
                               "asha_epochs": asha[arm]["epochs"],
                               "asha_full_candidates": asha[arm]["n_full"],
                               "asha_best": asha[arm]["best_full"]}
        for s in PER_ARM:
            mine = stats[s][arm]
            row[f"{s}_best"] = mine["best_full"]
            row[f"{s}_delta_pts"] = (None if mine["best_full"] is None
                                     or fifo[arm]["best_full"] is None
                                     # rounded: 0.9575 - 0.9625 is -0.5000000000000004
                                     else round(100 * (mine["best_full"]
                                                       - fifo[arm]["best_full"]), 6))
            row[f"{s}_epochs"] = mine["epochs"]
        row["chosen_draws"] = {s: selected[s].get(arm) for s in SCHEDULERS}
        rows.append(row)

    print(f"\n{PRESET}, lr search loguniform(1e-4, 3e-2), {args.samples} candidates per arm, "
          f"full budget {args.epochs} epochs{' (quick: 20 batches/epoch)' if args.quick else ''}")
    print("val_acc: best of any tune candidate that ran the full budget; Δ: against FIFO; "
          "ep: tune-stage trial-epochs")
    head = ("arm", "FIFO best", "FIFO ep", "halving best", "Δ pts", "halving ep",
            "ASHA-pv best", "Δ pts", "ASHA-pv ep", "ASHA ep", "ASHA full", "chosen f/h/pv/a")
    table = [head]
    for r in rows:
        table.append((r["arm"], fmt(r["fifo_best"]), str(r["fifo_epochs"]),
                      *[cell for s in PER_ARM for cell in (
                          fmt(r[f"{s}_best"]), fmt(r[f"{s}_delta_pts"], "+.2f"),
                          str(r[f"{s}_epochs"]))],
                      str(r["asha_epochs"]), str(r["asha_full_candidates"]),
                      "/".join(str(r["chosen_draws"][s]) for s in SCHEDULERS)))
    widths = [max(len(row[i]) for row in table) for i in range(len(head))]
    for row in table:
        print("  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                        for i, (c, w) in enumerate(zip(row, widths, strict=True))))

    total = {s: sum(a["epochs"] for a in st.values()) for s, st in stats.items()}
    summary: dict[str, Any] = {"tune_trial_epochs": total, "wall_s": walls}
    print("\ntune trial-epochs: " + ", ".join(f"{s} {total[s]}" for s in SCHEDULERS))
    for s in PER_ARM:
        ratio = total[s] / total["fifo"]
        shortfall = max((math.inf if r[f"{s}_delta_pts"] is None
                         else max(0.0, -r[f"{s}_delta_pts"])) for r in rows)
        spread = [r[f"{s}_epochs"] for r in rows]
        summary[s] = {"over_fifo_epochs": ratio,
                      "max_shortfall_pts": None if math.isinf(shortfall) else shortfall,
                      "arm_epochs_min_max": [min(spread), max(spread)],
                      "goal_epochs_met": ratio <= MAX_EPOCH_RATIO,
                      "goal_shortfall_met": shortfall <= MAX_SHORTFALL_PTS}
        print(f"{s}: {ratio:.3f} of FIFO's tune trial-epochs (goal <= {MAX_EPOCH_RATIO:.2f}: "
              f"{'met' if ratio <= MAX_EPOCH_RATIO else 'NOT met'}); worst arm "
              f"{shortfall:.2f} points below its FIFO best (goal <= {MAX_SHORTFALL_PTS}: "
              f"{'met' if shortfall <= MAX_SHORTFALL_PTS else 'NOT met'}); per-arm epochs "
              f"{min(spread)}-{max(spread)}")
    starved = sorted(r["arm"] for r in rows if r["asha_full_candidates"] == 0)
    summary["asha"] = {"over_fifo_epochs": total["asha"] / total["fifo"],
                       "starved_arms": starved}
    print(f"asha (pooled): {total['asha'] / total['fifo']:.3f} of FIFO's epochs; arms left "
          f"without a full-budget candidate: {len(starved)}"
          f"{' (' + ', '.join(starved) + ')' if starved else ''}")
    print("wall time per run (tune + replicate, CLI end to end): "
          + ", ".join(f"{s} {w:.1f} s" for s, w in walls.items()))

    result = {"preset": PRESET, "epochs": args.epochs, "samples": args.samples,
              "search_seed": args.search_seed, "quick": args.quick, "lr_domain": LR_DOMAIN,
              "arms": rows, **summary}
    path = out / "results.json"
    path.write_text(json.dumps(result, indent=2, default=str))
    print(f"table: {path}" + ("" if args.out else " (temporary; pass --out to keep it)"))
    if tmp:
        tmp.cleanup()


if __name__ == "__main__":
    main()
