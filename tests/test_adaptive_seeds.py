"""Seeds until decided (--seeds K --max-seeds M): the searcher's looks, the plan, the CLI.

The fast tests drive `AblationSearcher` the way Tune does (suggest / on_trial_result /
on_trial_complete / save / restore) with results written by hand, so each rule is checked
on known numbers: arms inconclusive at a look get --seed-batch more seeds (and so does the
baseline), decided arms get none, failed seeds count as run, nothing passes M, and a
restored searcher goes on exactly where the saved one was.

The slow tests run the CLI on test-only arms of mnist_attention (see `TWINS`): an arm that
barely learns must stop at K seeds as "worse", an exact copy of the baseline must stop as
"equivalent", and a copy with dropout 0.31 for 0.3 (no real difference, but not bitwise
the same, so never "equivalent" within half a point on these few seeds) runs to M; and an
interrupted adaptive run resumes without running any (arm, seed) twice.
"""

from __future__ import annotations

import io
import itertools
import json
import math
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import polars as pl
import pytest
from ray.tune.search import Searcher

from analysis.sequential import SeedSchedule, judge
from orchestrator.errors import UserError
from orchestrator.plan import SweepOptions, make_plan
from orchestrator.protocol import outcomes
from orchestrator.runner import RunTarget, _was_interrupted, write_meta
from orchestrator.searcher import AblationSearcher
from orchestrator.sink import trials_frame
from orchestrator.storage import RunFiles
from search_spaces.registry import load_experiment

MNIST = load_experiment("mnist_attention")
ROOT = Path(__file__).resolve().parents[1]
_ids = itertools.count()


def cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "orchestrator", *args], cwd=ROOT, text=True,
                          capture_output=True, timeout=timeout)


def _trials(run_dir: Path) -> pl.DataFrame:
    return pl.read_parquet(run_dir / "trials.parquet")


def _read_live(path: Path) -> pl.DataFrame:
    """A file the running sweep keeps replacing: one read of its bytes is one version."""
    return pl.read_parquet(io.BytesIO(path.read_bytes()))


# ---- driving the searcher by hand -------------------------------------------------------
def _plan(seeds=3, max_seeds=7, arms="[none,se,cbam]", experiment=MNIST, **options):
    overrides = (f"model.attention={arms}", "model.reduction=8", *options.pop("overrides", ()))
    return make_plan(experiment, SweepOptions(seeds=seeds, max_seeds=max_seeds,
                                              overrides=overrides, **options),
                     check_files=False)


def _searcher(plan, verbosity=0) -> AblationSearcher:
    return AblationSearcher(plan.searched, rule=plan.seed_rule, verbosity=verbosity)


def _drain(searcher) -> list[tuple[str, dict]]:
    out = []
    while True:
        trial_id = f"t{next(_ids)}"
        config = searcher.suggest(trial_id)
        if config is None or config == Searcher.FINISHED:
            return out
        out.append((trial_id, config))


def _arm(config) -> str:
    return config["model"]["attention"]


def _base(seed: int) -> float:
    return 0.90 + 0.01 * ((seed * 7) % 5)


# Per arm, test accuracy by seed: se clearly better, cbam +-2 points around the baseline
# (never decided on a few seeds), spatial clearly worse, self an exact copy of the baseline.
VALUES = {
    "none": _base,
    "se": lambda s: _base(s) + 0.05 + 0.001 * (s % 3),
    "cbam": lambda s: _base(s) + (0.02 if s % 2 else -0.02) + 0.003,
    "spatial": lambda s: _base(s) - 0.20 - 0.002 * (s % 3),
    "self": _base,
}


def _finish(searcher, trial_id, config, *, status="ok", error=False, test=True, values=VALUES):
    value = values[_arm(config)](config["seed"])
    searcher.on_trial_result(trial_id, {"epoch": 1, "val_acc": value / 2, "status": "running"})
    last = {"epoch": 2, "val_acc": value, "best_val_acc": value - 0.01,
            "test_acc": value if test else None, "status": status}
    searcher.on_trial_complete(trial_id, None if error else last, error=error)


def _run_to_end(searcher, pending=(), **finish) -> list[tuple[str, int]]:
    """Finish everything offered until the searcher says FINISHED; (arm, seed) in order."""
    seen, queue = [], list(pending)
    while queue or (queue := _drain(searcher)):
        trial_id, config = queue.pop(0)
        seen.append((_arm(config), config["seed"]))
        _finish(searcher, trial_id, config, **finish)
    assert searcher.suggest("end") == Searcher.FINISHED
    return seen


def _seeds_by_arm(pairs) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for arm, seed in pairs:
        out.setdefault(arm, []).append(seed)
    return out


def test_undecided_arms_and_the_baseline_get_more_seeds_until_the_maximum(capsys):
    searcher = _searcher(_plan(), verbosity=1)
    first = _drain(searcher)
    assert [(_arm(c), c["seed"], c["stage"], c["draw"]) for _, c in first] == [
        (arm, seed, "single", 0) for arm in ("none", "se", "cbam") for seed in (0, 1, 2)]
    for trial_id, config in first[:-1]:
        _finish(searcher, trial_id, config)
    # A look waits for every compared trial; an adaptive run is not finished before it.
    assert searcher.suggest("early") is None and searcher.looks() == []
    _finish(searcher, *first[-1])
    second = _drain(searcher)
    assert [(_arm(c), c["seed"]) for _, c in second] == [
        ("cbam", 3), ("cbam", 4), ("none", 3), ("none", 4)]
    rest = _run_to_end(searcher, second)
    assert _seeds_by_arm(rest) == {"cbam": [3, 4, 5, 6], "none": [3, 4, 5, 6]}
    looks = searcher.looks()
    assert [(x["look"], x["seeds"], x["verdicts"], x["more"]) for x in looks] == [
        (1, 3, {"se": "better", "cbam": "inconclusive"}, {"cbam": 2, "none": 2}),
        (2, 5, {"se": "better", "cbam": "inconclusive"}, {"cbam": 2, "none": 2}),
        (3, 7, {"se": "better", "cbam": "inconclusive"}, {})]
    assert {x["metric"] for x in looks} == {"test_acc"}
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("look")]
    assert lines == [
        "look 1/3 at 3 seeds: se better, cbam inconclusive -> 2 more seeds for cbam and none",
        "look 2/3 at 5 seeds: se better (look 1), cbam inconclusive -> 2 more seeds for cbam "
        "and none",
        "look 3/3 at 7 seeds: se better (look 1), cbam inconclusive -> at the maximum of 7 "
        "seeds, no more seeds"]


def test_a_run_whose_arms_are_all_decided_at_the_first_look_stops_at_k(capsys):
    searcher = _searcher(_plan(arms="[none,spatial,self]"), verbosity=1)
    seen = _run_to_end(searcher)
    assert _seeds_by_arm(seen) == {arm: [0, 1, 2] for arm in ("none", "spatial", "self")}
    assert searcher.looks()[0]["verdicts"] == {"spatial": "worse", "self": "equivalent"}
    assert ("look 1/3 at 3 seeds: spatial worse, self equivalent -> every arm decided, no "
            "more seeds") in capsys.readouterr().out


def test_the_baseline_stops_once_no_arm_needs_it_and_odd_batches_end_at_m():
    # Batch 3 from 2 seeds to at most 6: looks at 2, 5, 6; the last batch is 1 seed.
    plan = _plan(seeds=2, max_seeds=6, seed_batch=3, arms="[none,cbam]")
    assert plan.seed_rule.schedule.looks == (2, 5, 6)
    seen = _run_to_end(_searcher(plan))
    assert _seeds_by_arm(seen) == {"none": list(range(6)), "cbam": list(range(6))}
    # se decided at the first look: the baseline goes on only for cbam.
    searcher = _searcher(_plan(arms="[none,se,cbam]", max_seeds=5))
    seen = _seeds_by_arm(_run_to_end(searcher))
    assert seen["se"] == [0, 1, 2] and seen["none"] == seen["cbam"] == [0, 1, 2, 3, 4]


def test_failed_seeds_count_as_run_and_are_never_rerun():
    searcher = _searcher(_plan(arms="[none,se]", max_seeds=5))
    first = _drain(searcher)
    for trial_id, config in first:
        if (_arm(config), config["seed"]) == ("se", 1):
            _finish(searcher, trial_id, config, status="diverged")
        elif (_arm(config), config["seed"]) == ("se", 2):
            _finish(searcher, trial_id, config, error=True)
        else:
            _finish(searcher, trial_id, config)
    # se has 3 seeds run but 1 finished: too few pairs to decide, so 2 more, numbered on.
    look = searcher.looks()[0]
    assert look["look"] == 1 and look["verdicts"] == {"se": "inconclusive"}
    assert [(_arm(c), c["seed"]) for _, c in _drain(searcher)] == [
        ("se", 3), ("se", 4), ("none", 3), ("none", 4)]


def test_a_failed_seed_rerun_by_resume_holds_the_look_until_it_ends_again():
    searcher = _searcher(_plan(arms="[none,cbam]", max_seeds=5))
    first = _drain(searcher)
    for trial_id, config in first[:4]:
        _finish(searcher, trial_id, config, error=config["seed"] == 0)
    # --resume reruns the errored trial (same id) while the last one is still running.
    searcher.on_trial_result(first[0][0], {"epoch": 1, "val_acc": 0.5, "status": "running"})
    _finish(searcher, *first[5])
    _finish(searcher, *first[4])
    assert searcher.looks() == [] and searcher.suggest("waiting") is None
    _finish(searcher, *first[0])
    assert [x["look"] for x in searcher.looks()] == [1]


def test_no_arm_gets_more_than_m_seeds_even_when_a_seed_measured_nothing():
    # cbam's seed 4 ends "ok" without a test accuracy: the report leaves it out, so at 5
    # seeds cbam has 4 measured and the look would ask for one more; M=5 forbids it.
    searcher = _searcher(_plan(arms="[none,cbam]", max_seeds=5))
    seen = []
    while offered := _drain(searcher):
        for trial_id, config in offered:
            seen.append((_arm(config), config["seed"]))
            _finish(searcher, trial_id, config,
                    test=(_arm(config), config["seed"]) != ("cbam", 4))
    assert searcher.suggest("end") == Searcher.FINISHED
    assert _seeds_by_arm(seen) == {"none": [0, 1, 2, 3, 4], "cbam": [0, 1, 2, 3, 4]}


def test_the_metric_is_the_reports_test_acc_else_best_val_acc():
    # Test accuracy says se is worse, validation that it is better: test_acc decides.
    values = {"none": lambda s: 0.9 + 0.01 * s, "se": lambda s: 0.8 + 0.013 * s}
    searcher = _searcher(_plan(arms="[none,se]"))
    for trial_id, config in _drain(searcher):
        value = values[_arm(config)](config["seed"])
        searcher.on_trial_complete(trial_id, {
            "epoch": 2, "status": "ok", "test_acc": value,
            "best_val_acc": 2 - value if _arm(config) == "se" else value})
    assert searcher.looks()[0]["metric"] == "test_acc"
    assert searcher.looks()[0]["verdicts"] == {"se": "worse"}
    searcher = _searcher(_plan(arms="[none,se]"))
    for trial_id, config in _drain(searcher):
        _finish(searcher, trial_id, config, test=False, values={**VALUES, "se": VALUES["cbam"]})
    assert searcher.looks()[0]["metric"] == "best_val_acc"
    # The rows' rules: a failed seed is None, an ok seed without the metric is left out.
    rows = [{"variant": "none", "seed": 0, "status": "ok", "test_acc": 0.9},
            {"variant": "none", "seed": 1, "status": "diverged", "test_acc": None},
            {"variant": "se", "seed": 0, "status": "error"},
            {"variant": "se", "seed": 1, "status": "ok", "test_acc": math.nan,
             "best_val_acc": 0.5}]
    assert outcomes(rows, ["none", "se"], "none") == (
        "test_acc", {"none": {0: 0.9, 1: None}, "se": {0: None}})


def test_a_tuned_run_adds_replicates_of_the_chosen_candidate():
    plan = _plan(seeds=2, max_seeds=4, arms="[none,cbam]", samples=2)
    assert plan.protocol is not None and plan.searched is plan.protocol
    searcher = _searcher(plan)
    tune = _drain(searcher)
    assert {c["stage"] for _, c in tune} == {"tune"}
    for trial_id, config in tune:
        _finish(searcher, trial_id, config, values={a: (lambda s, d=config["draw"]: 0.8 + 0.1 * d)
                                                    for a in VALUES})
    replicates = _drain(searcher)
    assert [(_arm(c), c["seed"], c["stage"], c["draw"]) for _, c in replicates] == [
        ("none", 1, "replicate", 1), ("none", 2, "replicate", 1),
        ("cbam", 1, "replicate", 1), ("cbam", 2, "replicate", 1)]
    seen = _run_to_end(searcher, replicates)
    assert _seeds_by_arm(seen[4:]) == {"cbam": [3, 4], "none": [3, 4]}
    # The extra seeds are replicates of the same choice.
    assert searcher.looks()[0]["more"] == {"cbam": 2, "none": 2}


def test_extra_seeds_repeat_the_chosen_config():
    plan = _plan(seeds=2, max_seeds=4, arms="[none,cbam]", samples=2)
    searcher = _searcher(plan)
    for trial_id, config in _drain(searcher):
        _finish(searcher, trial_id, config, values={a: (lambda s, d=config["draw"]: 0.8 + 0.1 * d)
                                                    for a in VALUES})
    configs = []
    while offered := _drain(searcher):
        for trial_id, config in offered:
            configs.append(config)
            _finish(searcher, trial_id, config)
    assert sorted((_arm(c), c["seed"]) for c in configs) == sorted(
        (a, s) for a in ("none", "cbam") for s in (1, 2, 3, 4))
    for arm in ("none", "cbam"):
        mine = [c for c in configs if _arm(c) == arm]
        assert len({(c["train"]["lr"], c["draw"], c["stage"]) for c in mine}) == 1


@pytest.mark.parametrize("when", ["before the look", "after the look", "in flight"])
def test_save_and_restore_in_the_middle_of_the_loop_go_on_without_repeating(tmp_path, when):
    plan = _plan(max_seeds=7)
    reference = _run_to_end(_searcher(plan))
    searcher = _searcher(plan)
    # Finished before the save: 8 of the first 9 trials (the 9th still running), all 9
    # (the look queued seeds Tune has not asked for yet), or 9 and 1 of the 4 extra seeds
    # Tune has started (3 still running).
    finished = {"before the look": 8, "after the look": 9, "in flight": 10}[when]
    done, pending = [], []
    while len(done) < finished:
        pending = pending or _drain(searcher)
        trial_id, config = pending.pop(0)
        done.append((_arm(config), config["seed"]))
        _finish(searcher, trial_id, config)
    if when == "in flight":
        assert len(pending) == 3
    searcher.save(str(tmp_path / "searcher.pkl"))
    restored = _searcher(plan)
    restored.restore(str(tmp_path / "searcher.pkl"))
    # Tune reruns what the snapshot saw unfinished, with the same trial ids.
    rest = _run_to_end(restored, pending)
    assert done + rest == reference
    assert len(set(done + rest)) == len(done + rest)
    assert restored.looks() == _looks_of(plan)


def _looks_of(plan):
    searcher = _searcher(plan)
    _run_to_end(searcher)
    return searcher.looks()


def test_the_runner_judges_a_run_finished_exactly_when_the_searcher_does(tmp_path):
    plan = _plan(arms="[none,se,cbam]", max_seeds=5)
    searcher = _searcher(plan)
    seen = _run_to_end(searcher)
    rows = []
    for arm, seed in seen:
        value = VALUES[arm](seed)
        rows.append({"trial_id": f"{arm}-{seed}", "variant": arm, "seed": seed,
                     "stage": "single", "draw": 0, "status": "ok", "test_acc": value,
                     "best_val_acc": value - 0.01})
    target = RunTarget(storage=str(tmp_path), preset="mnist_attention", run_id="r")
    files = RunFiles(target.location)
    files.write_parquet(trials_frame(rows), "trials.parquet")
    assert not _was_interrupted(target, plan)
    # Stopped before the last look's seeds ran: the run is not finished.
    files.write_parquet(trials_frame([r for r in rows if r["seed"] < 3]), "trials.parquet")
    assert _was_interrupted(target, plan)


# ---- the plan, meta.json and the command line ---------------------------------------------
def test_the_schedule_alpha_and_margin_from_options_and_preset():
    plan = _plan(seeds=3, max_seeds=12)
    rule = plan.seed_rule
    assert rule.adaptive and rule.schedule.looks == (3, 5, 7, 9, 11, 12)
    assert (rule.alpha, rule.margin, rule.baseline) == (0.05, 0.005, "none")
    assert plan.n_trials == 9 and plan.max_trials == 36 and plan.num_samples == 36
    fixed = _plan(max_seeds=None)
    assert not fixed.adaptive and fixed.searched is None
    assert fixed.seed_rule.schedule == SeedSchedule.fixed(3)
    wide = replace(MNIST, margin=0.01)
    assert _plan(experiment=wide).seed_rule.margin == 0.01
    assert _plan(experiment=wide, margin=0.02, alpha=0.1).seed_rule.margin == 0.02
    with pytest.raises(UserError, match="preset mnist_attention's margin 0: must be a positive"):
        _plan(experiment=replace(MNIST, margin=0.0))


@pytest.mark.parametrize(("options", "message"), [
    ({"seeds": 3, "max_seeds": 2}, "--max-seeds 2 is below --seeds 3"),
    ({"seed_batch": 0}, "--seed-batch 0: must be at least 1"),
    ({"alpha": 1.0}, "--alpha 1: must be between 0 and 1"),
    ({"alpha": 0.0}, "--alpha 0: must be between 0 and 1"),
    ({"margin": 0.0}, "--margin 0: must be a positive"),
    ({"margin": -0.01}, "--margin -0.01: must be a positive"),
    ({"arms": "[se,cbam]"}, "baseline 'none', which this run lacks"),
])
def test_bad_values_are_one_line_errors(options, message):
    with pytest.raises(UserError) as err:
        _plan(**options)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_meta_records_the_schedule_alpha_and_margin_also_for_a_fixed_run(tmp_path):
    for name, plan, schedule in (
            ("fixed", _plan(max_seeds=None), SeedSchedule.fixed(3)),
            ("adaptive", _plan(max_seeds=12, alpha=0.1, margin=0.01),
             SeedSchedule(3, 12, 2))):
        target = RunTarget(storage=str(tmp_path), preset="mnist_attention", run_id=name)
        write_meta(target, plan, ["test"], SweepOptions())
        meta = json.loads((Path(target.location) / "meta.json").read_text())
        assert SeedSchedule.from_meta(meta["seed_schedule"]) == schedule
        assert meta["seed_schedule"]["design"] == "Bonferroni over the planned looks"
        assert (meta["alpha"], meta["margin"]) == ((0.05, 0.005) if name == "fixed"
                                                   else (0.1, 0.01))


class TestCommandLine:
    def test_show_prints_the_schedule(self):
        out = cli("show", "mnist_attention", "--seeds", "3", "--max-seeds", "12")
        assert out.returncode == 0, out.stderr
        assert "trials:     15 to 60 (seeds until decided)" in out.stdout
        assert "looks at 3, 5, 7, 9, 11, 12 seeds" in out.stdout
        assert "Bonferroni over the planned looks" in out.stdout

    @pytest.mark.parametrize(("args", "message"), [
        (("--seeds", "3", "--max-seeds", "2"), "--max-seeds 2 is below --seeds 3"),
        (("--max-seeds", "5", "--margin", "0"), "--margin 0: must be a positive"),
    ])
    def test_bad_values_are_one_line_errors_with_a_nonzero_exit(self, args, message):
        out = cli("run", "mnist_attention", *args, timeout=120)
        assert out.returncode == 2
        lines = out.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], \
            out.stderr


# ---- end to end ------------------------------------------------------------------------
# Test-only arms: mnist_attention's baseline recipe as named variants. "twin" is the
# baseline itself (bitwise the same trials), "frozen" trains at lr 1e-7 (it stays at
# chance), "jitter" only changes the dropout from 0.3 to 0.31.
TWINS = '''
import copy
from dataclasses import replace

from search_spaces.mnist_attention import EXPERIMENT as MNIST
from search_spaces.variants import named_variants

base = copy.deepcopy(dict(MNIST.param_space))
base["model"] = {**base["model"], "attention": "none"}
EXPERIMENT = replace(
    MNIST, name="mnist_twins", variant_keys=("variant",), baseline_variant="none",
    reported={},
    param_space=named_variants(base, {
        "none": {}, "twin": {}, "frozen": {"train.lr": 1e-7}, "jitter": {"model.dropout": 0.31},
    }),
)
'''
# K=3, M=5: looks at 3 and 5 seeds. alpha 0.2 (0.1 per look): 3 seeds of smoke training
# separate "frozen" from the baseline at that level with room to spare (Holm p ~0.03).
ADAPTIVE = ("--smoke", "--set", "train.max_batches=15", "--seeds", "3", "--max-seeds", "5",
            "--alpha", "0.2")


@pytest.fixture(scope="module")
def twins(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("preset") / "mnist_twins.py"
    path.write_text(TWINS)
    return path


@pytest.fixture(scope="module")
def adaptive_run(twins, tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    storage = tmp_path_factory.mktemp("adaptive")
    out = cli("run", str(twins), *ADAPTIVE, "--storage", str(storage), "--name", "ref")
    assert out.returncode == 0, out.stderr[-3000:]
    return storage / "mnist_twins" / "ref", out


def _seed_lists(trials: pl.DataFrame) -> dict[str, list[int]]:
    return {arm: sorted(seeds) for arm, seeds in
            trials.group_by("variant").agg(pl.col("seed")).iter_rows()}


@pytest.mark.slow
class TestSeedsUntilDecided:
    def test_worse_arm_stops_at_k_identical_arms_are_equivalent_or_run_to_m(self, adaptive_run):
        run_dir, out = adaptive_run
        trials = _trials(run_dir)
        assert not trials.select("variant", "seed").is_duplicated().any()
        assert set(trials["stage"]) == {"single"} and set(trials["status"]) == {"ok"}
        assert _seed_lists(trials) == {"none": [0, 1, 2, 3, 4], "jitter": [0, 1, 2, 3, 4],
                                       "twin": [0, 1, 2], "frozen": [0, 1, 2]}
        assert ("look 1/2 at 3 seeds: twin equivalent, frozen worse, jitter inconclusive -> "
                "2 more seeds for jitter and none") in out.stdout
        assert ("look 2/2 at 5 seeds: twin equivalent (look 1), frozen worse (look 1), "
                "jitter inconclusive -> at the maximum of 5 seeds, no more seeds") in out.stdout
        meta = json.loads((run_dir / "meta.json").read_text())
        assert meta["seed_schedule"]["looks"] == [3, 5] and meta["state"] == "finished"
        assert (meta["alpha"], meta["margin"]) == (0.2, 0.005)
        # Replayed from trials.parquet alone, as the report does: the same verdicts, and
        # nothing left to run.
        per_seed = {arm: {s: v for s, v in trials.filter(pl.col("variant") == arm)
                          .select("seed", "test_acc").iter_rows()}
                    for arm in ("none", "twin", "frozen", "jitter")}
        judgement = judge(per_seed, "none", SeedSchedule.from_meta(meta["seed_schedule"]),
                          metric="test_acc", alpha=0.2, margin=0.005)
        assert {c.variant: (c.verdict, c.look) for c in judgement.comparisons} == {
            "twin": ("equivalent", 1), "frozen": ("worse", 1), "jitter": ("inconclusive", 2)}
        assert judgement.more == {}

    def test_interrupted_after_the_first_look_resumes_without_repeating_a_seed(
            self, tmp_path, twins, adaptive_run):
        # One seed per look (looks at 3, 4, 5): the resumed run makes two looks of its own,
        # the first of which must number its seed after those the interrupted run proposed.
        ref_dir, _ = adaptive_run
        args = ["run", str(twins), *ADAPTIVE, "--seed-batch", "1",
                "--set", "variant=[none,frozen,jitter]", "--storage", str(tmp_path),
                "--name", "int"]
        proc = subprocess.Popen([sys.executable, "-m", "orchestrator", *args], cwd=ROOT,
                                text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        run_dir = tmp_path / "mnist_twins" / "int"
        path = run_dir / "trials.parquet"
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and proc.poll() is None:
            rows = _read_live(path) if path.exists() else None
            if rows is not None and "seed" in rows.columns and (rows["seed"] >= 3).any():
                break  # the first look has queued the extra seeds and one has started
            time.sleep(0.1)
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=120)
        assert proc.returncode == 130, stderr[-2000:]
        assert ("look 1/3 at 3 seeds: frozen worse, jitter inconclusive -> 1 more seed for "
                "jitter and none") in stdout
        before = _trials(run_dir)
        assert (before["seed"] >= 3).any() and not (before["seed"] >= 4).any()

        out = cli("run", str(twins), "--storage", str(tmp_path), "--name", "int", "--resume")
        assert out.returncode == 0, out.stderr[-3000:]
        assert ("look 3/3 at 5 seeds: frozen worse (look 1), jitter inconclusive -> at the "
                "maximum of 5 seeds, no more seeds") in out.stdout
        trials = _trials(run_dir)
        assert not trials.select("variant", "seed").is_duplicated().any()
        assert _seed_lists(trials) == {"none": [0, 1, 2, 3, 4], "jitter": [0, 1, 2, 3, 4],
                                       "frozen": [0, 1, 2]}
        assert set(trials["status"]) == {"ok"}
        assert json.loads((run_dir / "meta.json").read_text())["state"] == "finished"
        # Every (arm, seed) gives the number the uninterrupted run got.
        joined = trials.join(_trials(ref_dir), on=["variant", "seed"], suffix="_ref")
        assert joined.height == 13
        assert (joined["test_acc"] == joined["test_acc_ref"]).all()
