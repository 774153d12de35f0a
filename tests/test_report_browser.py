"""The HTML report in a real browser: headless Chromium, opened from a file, network off.

Why a browser: a report can contain every spec and still show blank boxes (a script that
fails, a bundle that wants the network). Only running the page shows that each chart draws.
Debian's `chromium` is installed by .ci/run; without it (and outside CI) the test skips.
The screenshot is kept in test-artifacts/ for a person to look at.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts"


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    if os.environ.get("CI"):
        pytest.fail("CI must provide chromium (.ci/run installs the Debian package)")
    pytest.skip("no chromium on this machine (apt-get install chromium)")


def _browse(report: Path, profile: Path, *extra: str) -> subprocess.CompletedProcess:
    """Open ``report`` offline: every host resolves to nothing and any proxy use fails."""
    command = [
        _chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
        "--no-first-run", f"--user-data-dir={profile}",
        "--host-resolver-rules=MAP * ~NOTFOUND", "--proxy-server=http://127.0.0.1:9",
        "--proxy-bypass-list=<-loopback>", "--virtual-time-budget=20000",
        *extra, report.resolve().as_uri(),
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=180)


@pytest.fixture(scope="module")
def smoke_report(tmp_path_factory) -> Path:
    """The report of a real smoke sweep: 5 variants x 2 seeds on the bundled digits."""
    storage = tmp_path_factory.mktemp("runs")
    out = subprocess.run(
        [sys.executable, "-m", "orchestrator", "run", "mnist_attention", "--smoke", "--seeds",
         "2", "--storage", str(storage), "--name", "browser", "--quiet"],
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    return storage / "mnist_attention" / "browser" / "report.html"


@pytest.mark.slow
def test_every_chart_renders_offline_in_chromium(smoke_report, tmp_path):
    text = smoke_report.read_text(encoding="utf-8")
    assert not re.search(r"<script[^>]*\bsrc\s*=", text, re.IGNORECASE)
    assert not re.search(r"""<link[^>]*href""", text, re.IGNORECASE)
    figures = text.count('<figure class="chart">')
    assert figures >= 5  # curves, effect, two cost frontiers, seed spread, status

    dom = _browse(smoke_report, tmp_path / "profile", "--dump-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    html = dom.stdout
    rendered = re.findall(r'<figure class="chart rendered">(.*?)</figure>', html, re.S)
    failed = re.findall(r'<figure class="chart render-failed"[^>]*>', html)
    assert not failed, failed
    assert len(rendered) == figures, (len(rendered), figures)
    for figure in rendered:
        # vega-embed's own container with a drawn SVG (marks), not the static fallback.
        assert re.search(r'class="[^"]*\bvega-embed\b', figure), figure[:300]
        assert "<svg" in figure and 'class="marks"' in figure

    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "report-screenshot.png"
    shot.unlink(missing_ok=True)
    picture = _browse(smoke_report, tmp_path / "profile2", f"--screenshot={shot}",
                      "--window-size=1280,7000", "--hide-scrollbars")
    assert picture.returncode == 0, picture.stderr[-2000:]
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 50_000


@pytest.mark.slow
def test_the_comparison_page_renders_offline_too(smoke_report, tmp_path):
    import json
    import shutil

    first = smoke_report.parent
    second = tmp_path / "second"
    shutil.copytree(first, second)
    meta = json.loads((second / "meta.json").read_text())
    meta["run_id"] = "second"
    (second / "meta.json").write_text(json.dumps(meta))
    page = tmp_path / "compare.html"
    out = subprocess.run([sys.executable, "-m", "orchestrator", "report", str(first),
                          str(second), "-o", str(page)],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    dom = _browse(page, tmp_path / "profile", "--dump-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert dom.stdout.count('<figure class="chart rendered">') == 1
    assert 'class="chart render-failed"' not in dom.stdout
