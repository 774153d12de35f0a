"""Bad input ends in one line `error: ...` and exit code 2, quickly and without a traceback.

Each case is run as a user runs it (a subprocess of ``python -m orchestrator``) where the
failure is found before Ray starts, so a subprocess costs a couple of seconds; the choice of
run to resume is checked on the function itself.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def one_line_error(*args: str) -> str:
    """Run the CLI, assert the one-line error contract, return that line. A hang fails on
    the subprocess timeout; how fast each error comes is measured, not asserted."""
    out = subprocess.run([sys.executable, "-m", "orchestrator", *args], cwd=ROOT, text=True,
                         capture_output=True, timeout=120)
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 2, (out.returncode, out.stderr[-3000:])
    assert "Traceback" not in out.stderr + out.stdout, out.stderr[-3000:]
    assert len(lines) == 1 and lines[0].startswith("error: "), out.stderr[-3000:]
    return lines[0]


# ------------------------------------------------------------------ preset files


PRESET_FILES = {
    "missing_module": ("import os\nimport nonexistent_mod\n", "line 2",
                       "ModuleNotFoundError: No module named 'nonexistent_mod'"),
    "syntax": ("x = 1\n\ndef f(:\n    pass\n", "line 3", "SyntaxError"),
    "raises": ("X = 1\nraise RuntimeError('no data for this study')\n", "line 2",
               "RuntimeError: no data for this study"),
}


@pytest.mark.parametrize("case", sorted(PRESET_FILES))
@pytest.mark.parametrize("command", ["run", "show"])
def test_preset_file_that_fails_to_import(tmp_path, case, command):
    text, line, exception = PRESET_FILES[case]
    path = tmp_path / f"{case}.py"
    path.write_text(text)
    error = one_line_error(command, str(path))
    assert f"preset file {path} failed to import" in error
    assert f"{line}: {exception}" in error


def test_preset_file_error_in_a_module_it_imports_names_both(tmp_path):
    from search_spaces.registry import PresetFileError, load_experiment

    helper = tmp_path / "helpers_for_preset.py"
    helper.write_text("def build():\n    raise KeyError('lr')\n")
    path = tmp_path / "study.py"
    path.write_text(f"import sys\nsys.path.insert(0, {str(tmp_path)!r})\n"
                    "import helpers_for_preset\nEXPERIMENT = helpers_for_preset.build()\n")
    try:
        with pytest.raises(PresetFileError) as caught:
            load_experiment(str(path))
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("helpers_for_preset", None)
    message = str(caught.value)
    assert "\n" not in message
    assert f"{path} failed to import: line 4: KeyError: 'lr' (raised in {helper} line 2)" in message


# ------------------------------------------------------------------ data synth --out


def test_synth_into_a_path_under_a_regular_file(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    out = blocker / "hmdb"
    error = one_line_error("data", "synth", "hmdb51", "--out", str(out))
    assert f"--out {out}: Not a directory ({blocker} is a file, not a directory)" in error


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux /proc")
def test_synth_into_proc(tmp_path):
    error = one_line_error("data", "synth", "wlasl", "--out", "/proc/nope")
    assert "--out /proc/nope: No such file or directory" in error


# ------------------------------------------------------------------ --resume without --name


def _run_dir(storage: Path, preset: str, run_id: str, meta: dict | None, mtime: float) -> None:
    run = storage / preset / run_id
    run.mkdir(parents=True)
    if meta is not None:
        (run / "meta.json").write_text(json.dumps(meta))
    os.utime(run, (mtime, mtime))


def test_resume_picks_the_latest_started_run_not_the_last_name(tmp_path):
    from orchestrator.run_index import latest_started_run

    now = time.time()
    # The newer run sorts first by name, and its directory is even the older one on disk:
    # meta.json's started_at decides.
    _run_dir(tmp_path, "p", "zzz-old", {"started_at": "2024-05-01T10:00:00+00:00"}, now)
    _run_dir(tmp_path, "p", "aaa-new", {"started_at": "2024-05-02T09:00:00+00:00"}, now - 3600)
    _run_dir(tmp_path, "p", "not-a-run", None, now + 60)      # no meta.json: not resumable
    (tmp_path / "p" / "stray-file").write_text("x")
    latest = latest_started_run(str(tmp_path), "p")
    assert latest is not None and latest.run_id == "aaa-new"
    assert latest.describe() == "started 2024-05-02 09:00:00 UTC"
    assert latest_started_run(str(tmp_path), "other") is None


def test_resume_falls_back_to_directory_time_without_started_at(tmp_path):
    from orchestrator.run_index import latest_started_run

    _run_dir(tmp_path, "p", "zzz-old", {"state": "running"}, 1_700_000_000)
    _run_dir(tmp_path, "p", "aaa-new", {"state": "running"}, 1_700_100_000)
    latest = latest_started_run(str(tmp_path), "p")
    assert latest is not None and latest.run_id == "aaa-new"
    assert latest.describe().startswith("last modified 2023-11-16")


def test_resume_without_name_and_without_runs(tmp_path):
    error = one_line_error("run", "mnist_attention", "--resume", "--storage", str(tmp_path))
    assert f"no runs of mnist_attention under {tmp_path}" in error


# ------------------------------------------------------------------ data there but unusable


def _garble(path: Path, size: int = 600) -> None:
    path.write_bytes(b"RIFF" + bytes(range(256)) * (size // 256 + 1))


@pytest.fixture
def bad_cifar(tmp_path) -> Path:
    """CIFAR-10 whose files exist: one batch is not a pickle, the test batch has wrong shapes."""
    import pickle

    from trainables.data.cifar import write_cifar

    directory = write_cifar(tmp_path / "cifar", classes=10, n_train=100, n_test=20)
    (directory / "data_batch_2").write_bytes(b"\x80\x02not a pickle at all")
    with open(directory / "test_batch", "rb") as f:
        batch = pickle.load(f, encoding="bytes")
    batch[b"data"] = batch[b"data"][:, :1024]
    with open(directory / "test_batch", "wb") as f:
        pickle.dump(batch, f, protocol=2)
    return tmp_path / "cifar"


def test_run_refuses_corrupt_cifar_before_ray(bad_cifar, tmp_path):
    error = one_line_error("run", "cifar10_cnntention", "--smoke", "--data-root", str(bad_cifar),
                           "--storage", str(tmp_path / "runs"))
    assert "dataset cifar10 under" in error and "2 of 7 files are corrupt" in error
    assert "data_batch_2 (not a readable CIFAR pickle" in error
    assert "test_batch (data is uint8 (20, 1024), expected uint8 (N, 3072))" in error
    assert "re-extract cifar-10-python.tar.gz" in error
    assert not (tmp_path / "runs").exists()


def test_run_refuses_fsdd_with_no_readable_recording(tmp_path):
    from trainables.data.fsdd import write_fsdd

    paths = write_fsdd(tmp_path / "fsdd", speakers=2, takes=5)
    for path in paths:
        _garble(path)
    error = one_line_error("run", "fsdd_attention", "--smoke", "--data-root",
                           str(tmp_path / "fsdd"), "--storage", str(tmp_path / "runs"))
    assert f"dataset fsdd under {tmp_path / 'fsdd' / 'recordings'}: none of the {len(paths)} " \
           "recordings could be read: 0_speaker0_0.wav (Format not recognised" in error
    assert f"and {len(paths) - 3} more; replace them with readable WAVs" in error


def _video_tree(kind: str, root: Path) -> list[Path]:
    from tests.conftest import needs_video_codecs

    needs_video_codecs()
    from trainables.data.video.synth import write_hmdb51, write_wlasl

    if kind == "hmdb51":
        return write_hmdb51(root, classes=2, videos_per_class=3, seconds=1.0, size=(48, 64))
    return write_wlasl(root, glosses=2, videos_per_gloss=3, size=(48, 64))


@pytest.mark.parametrize(("kind", "preset"), [("hmdb51", "hmdb51_ablation"),
                                              ("wlasl", "wlasl_temporal")])
def test_run_refuses_video_tree_where_nothing_decodes(tmp_path, kind, preset):
    root = tmp_path / kind
    videos = _video_tree(kind, root)
    for path in videos:
        _garble(path, 2000)
    error = one_line_error("run", preset, "--smoke", "--data-root", str(root),
                           "--storage", str(tmp_path / "runs"))
    assert f"dataset {kind} under {root}: none of the {len(videos)} listed videos decode: " in error
    assert f"{videos[0].parent.name}/" in error and "(cannot open (" in error
    assert f"and {len(videos) - 3} more" in error
    assert f"`python -m orchestrator data check {kind} --data-root {root}" in error


# The preflight on its own: good and partly damaged data pass (the loaders skip and count the
# bad files), unusable data fails, and a root the driver cannot see is left to the workers.


def _config(name: str, root: Path | str | None, **extra):
    from trainables.data.registry import parse_data_config

    return parse_data_config({"name": name, "root": None if root is None else str(root), **extra})


def test_preflight_passes_good_and_partly_damaged_data(tmp_path):
    from orchestrator.preflight import check_data
    from trainables.data.cifar import write_cifar
    from trainables.data.fsdd import write_fsdd

    write_cifar(tmp_path / "cifar", classes=10, n_train=100, n_test=20)
    write_cifar(tmp_path / "cifar100", classes=100, n_train=200, n_test=100)
    paths = write_fsdd(tmp_path / "fsdd", speakers=2, takes=5, corrupt=2, truncated=1)
    for path in paths:   # all but one recording unreadable (not one of the first tried)
        if path.name != "0_speaker0_1.wav":
            _garble(path)
    check_data(_config("cifar10", tmp_path / "cifar"))
    check_data(_config("cifar100", tmp_path / "cifar100", label_mode="coarse"))
    check_data(_config("fsdd", tmp_path / "fsdd"))
    check_data(_config("fsdd", None))                       # bundled
    check_data(_config("cifar10", tmp_path / "elsewhere"))  # not on this machine: not checked


def test_preflight_gives_up_on_mostly_bad_data_after_its_time(tmp_path, monkeypatch):
    from orchestrator import preflight
    from orchestrator.errors import UserError
    from trainables.data.fsdd import write_fsdd

    paths = write_fsdd(tmp_path / "fsdd", speakers=2, takes=5)
    for path in paths:   # the one good recording is not among the 16 spread ones tried first
        if path.name != "0_speaker0_1.wav":
            _garble(path)
    preflight.check_data(_config("fsdd", tmp_path / "fsdd"))
    monkeypatch.setattr(preflight, "FSDD_BUDGET_S", 0.0)
    with pytest.raises(UserError, match=r"none of 16 recordings tried in 0 s \(of 100\) could"):
        preflight.check_data(_config("fsdd", tmp_path / "fsdd"))


def test_preflight_fsdd_names_unparsable_layout(tmp_path):
    from orchestrator.errors import UserError
    from orchestrator.preflight import check_data

    (tmp_path / "recordings").mkdir()
    (tmp_path / "recordings" / "hello.wav").write_bytes(b"x")
    with pytest.raises(UserError, match=r"dataset fsdd: no WAV under .* is named like"):
        check_data(_config("fsdd", tmp_path))


def test_preflight_passes_video_tree_with_one_good_video(tmp_path):
    from orchestrator.errors import UserError
    from orchestrator.preflight import check_data

    videos = _video_tree("hmdb51", tmp_path)
    for path in videos[:-1]:
        _garble(path, 2000)
    check_data(_config("hmdb51", tmp_path))
    _garble(videos[-1], 2000)
    with pytest.raises(UserError, match="none of the 6 listed videos decode"):
        check_data(_config("hmdb51", tmp_path))


def test_preflight_checks_each_root_of_a_grid(tmp_path, bad_cifar):
    from orchestrator.errors import UserError
    from orchestrator.plan import SweepOptions, make_plan
    from orchestrator.preflight import check_space
    from search_spaces.registry import load_experiment
    from trainables.data.cifar import write_cifar

    write_cifar(tmp_path / "good", classes=10, n_train=100, n_test=20)
    plan = make_plan(load_experiment("cifar10_cnntention"), SweepOptions(
        smoke=True, overrides=(f"data.root=[{tmp_path / 'good'},{bad_cifar}]",)))
    with pytest.raises(UserError, match=f"under {bad_cifar}"):
        check_space(plan.space)


@pytest.mark.parametrize(("values", "message"), [
    ({"name": "reduced_mnist", "split_seed": -1}, r"data.split_seed=-1 must be an integer in \[0, 2\*\*32\)"),
    ({"name": "cifar10", "split_seed": 2**32}, r"data.split_seed=4294967296 must be an integer"),
    ({"name": "fsdd", "val_fraction": 1.0}, r"data.val_fraction=1.0 must be in \[0, 1\)"),
    ({"name": "fsdd", "test_fraction": -0.1}, r"data.test_fraction=-0.1 must be in \[0, 1\)"),
    ({"name": "cifar10", "limit_train": 0}, r"data.limit_train=0 must be >= 1"),
    ({"name": "wlasl", "decode_workers": 0}, r"data.decode_workers=0 must be >= 1"),
])
def test_data_values_numpy_or_a_split_would_refuse_are_refused_on_the_driver(values, message):
    from trainables.config import ConfigError
    from trainables.data.registry import parse_data_config

    with pytest.raises(ConfigError, match=message):
        parse_data_config(values)
    fine = {key: value for key, value in values.items() if key == "name"}
    parse_data_config(fine)
