"""benchmarks/gpu_check.py: its CPU tiny run end to end, failing soft, and its time budget."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_check.py"
SECTIONS = ("presets", "resnet20", "packing", "video_model", "clip_store")


def _load():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


gpu_check = _load()


@pytest.fixture(autouse=True)
def keep_torch_threads():
    """main() sets one torch thread for --device cpu; other tests keep theirs."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def _numbers(row: dict) -> dict[str, float]:
    return {k: v for k, v in row.items()
            if isinstance(v, int | float) and not isinstance(v, bool)
            and k not in ("exit_code", "trials_on_cuda")}


@pytest.mark.slow
def test_cpu_tiny_run_fills_every_section(tmp_path):
    out = tmp_path / "tmp.json"
    done = subprocess.run([sys.executable, str(SCRIPT), "--device", "cpu", "--tiny", "--out",
                           str(out)], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(out.read_text())
    assert result["ok"] and result["failed_sections"] == [] and result["device"] == "cpu"
    sections = result["sections"]
    assert set(sections) == set(SECTIONS)
    for key in SECTIONS:
        section = sections[key]
        assert section["status"] == "ok" and section["rows"], (key, section)
        for row in section["rows"]:
            assert row["status"] == "ok" and row["result"]
            assert all(v > 0 for v in _numbers(row).values()), (key, row)

    presets = sections["presets"]["rows"]
    assert [r["check"] for r in presets] == ["mnist_attention", "cifar10_cnntention"]
    assert all(r["trials"] >= 1 and r["result"].startswith("ok") for r in presets)
    resnet = sections["resnet20"]["rows"]
    assert [r["mode"] for r in resnet] == ["fp32", "bf16", "bf16+channels_last",
                                           "bf16+channels_last+compile(aot_eager)"]
    assert all(r["images_per_s"] > 0 for r in resnet)
    packing = sections["packing"]["rows"]
    assert [r["concurrent"] for r in packing] == [1, 2]
    assert packing[0]["ratio_vs_1"] == 1.0 and [r["trials"] for r in packing] == [1, 2]
    (video,) = sections["video_model"]["rows"]
    assert video["flops_per_step"] > 0 and video["clips_per_s"] > 0
    assert video["mfu"] is None and video["peak_mem_mb"] is None  # n/a on a CPU
    (store,) = sections["clip_store"]["rows"]
    assert store["model_clips_per_s"] == video["clips_per_s"]
    assert store["store_over_model"] == pytest.approx(store["clips_per_s"] / video["clips_per_s"])

    table = done.stdout
    assert table.count("\n-----") == 1  # one table: one header rule
    for title in ("1 presets", "2 ResNet-20", "3 packing", "4 video model", "5 clip store"):
        assert title in table
    for preset in ("mnist_attention", "cifar10_cnntention"):
        assert any(line.split()[3:4] == [preset] and " ok (" in line
                   for line in table.splitlines()), table
    assert "all checks passed" in table


def _context(tmp_path, **sizes) -> object:
    return gpu_check.Context(device=torch.device("cpu"),
                             sizes=dataclasses.replace(gpu_check.TINY, **sizes),
                             scratch=tmp_path, deadline=time.monotonic() + 300, preset_gpus=0)


def test_a_raising_section_is_recorded_and_the_rest_still_runs(tmp_path, monkeypatch):
    def broken(ctx):
        raise RuntimeError("CUDA error: out of memory\nsecond line")

    def fine(ctx):
        return [{"check": "x", "status": "ok", "result": "1 img/s", "images_per_s": 1.0}]

    monkeypatch.setattr(gpu_check, "SECTIONS", (("a", "A", broken), ("b", "B", fine)))
    out = tmp_path / "r.json"
    assert gpu_check.main(["--device", "cpu", "--tiny", "--out", str(out)]) == 1
    result = json.loads(out.read_text())
    assert result["failed_sections"] == ["a"] and not result["ok"]
    assert result["sections"]["a"]["error"] == "RuntimeError: CUDA error: out of memory"
    assert "Traceback" in result["sections"]["a"]["traceback"]
    assert result["sections"]["b"]["status"] == "ok"


def test_a_failing_preset_is_a_one_line_error_row(tmp_path):
    # The CLI refuses the value before Ray starts: exit 2 and its one-line error.
    ctx = _context(tmp_path, presets=("mnist_attention",),
                   preset_sets={"mnist_attention": ("train.epochs=-3",)})
    rows = gpu_check.section_presets(ctx)
    assert [r["status"] for r in rows] == ["error"]
    assert rows[0]["exit_code"] == 2
    assert "train.epochs=-3 must be >= 1" in rows[0]["error"]
    assert "\n" not in rows[0]["error"] and rows[0]["result"].startswith("error: ")
    assert gpu_check.run_section(lambda c: rows, ctx)["status"] == "error"


def test_budget_used_up_skips_the_remaining_sections(tmp_path, capsys):
    out = tmp_path / "r.json"
    assert gpu_check.main(["--device", "cpu", "--tiny", "--budget-s", "0", "--out",
                           str(out)]) == 1
    result = json.loads(out.read_text())
    assert set(result["failed_sections"]) == set(SECTIONS)
    assert all(s["status"] == "skipped" and "budget" in s["note"]
               for s in result["sections"].values())
    assert "skipped: budget of 0 s used up" in capsys.readouterr().out


def test_peak_flops_table():
    assert gpu_check.peak_flops(torch.device("cpu")) == ("cpu", None)
    table = dict(gpu_check.PEAK_BF16_FLOPS)
    assert table["H200"] == table["H100 80GB HBM3"] == 989e12 and table["A100"] == 312e12
