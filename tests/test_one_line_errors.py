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


def one_line_error(*args: str, limit_s: float = 30) -> str:
    """Run the CLI, assert the one-line error contract, return that line."""
    started = time.monotonic()
    out = subprocess.run([sys.executable, "-m", "orchestrator", *args], cwd=ROOT, text=True,
                         capture_output=True, timeout=120)
    elapsed = time.monotonic() - started
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 2, (out.returncode, out.stderr[-3000:])
    assert "Traceback" not in out.stderr + out.stdout, out.stderr[-3000:]
    assert len(lines) == 1 and lines[0].startswith("error: "), out.stderr[-3000:]
    assert elapsed < limit_s, f"took {elapsed:.1f}s"
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
