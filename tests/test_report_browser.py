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


# Clicks an arm in the learning curves' legend, then another in a cost chart's legend, then
# the empty plot (which clears), and after each step records, per figure and per arm, the
# opacity of every mark Vega labelled with that arm (its aria-label says "variant: <arm>").
# Events are dispatched on the SVG elements, where Vega's own listeners pick them up.
_PROBE = """
(function () {
  var FIRST = %(first)s, SECOND = %(second)s;
  function arm(element) {
    var match = /(?:^|; )variant: ([^;]+)/.exec(element.getAttribute("aria-label") || "");
    return match ? match[1].trim() : null;
  }
  function snapshot(name) {
    return {name: name, figures: Array.prototype.map.call(
      document.querySelectorAll("figure.chart"), function (figure) {
        var arms = {}, labels = [];
        figure.querySelectorAll(".role-mark [aria-label]").forEach(function (element) {
          var name = arm(element);
          if (name === null) { return; }
          var opacity = parseFloat(element.getAttribute("opacity") || "1");
          (arms[name] = arms[name] || []).push(opacity);
          labels.push(element.getAttribute("aria-label"));
        });
        var title = figure.querySelector(".role-title-text");
        return {title: title ? title.textContent : "", arms: arms, labels: labels};
      })};
  }
  function fire(element) {
    element.dispatchEvent(new MouseEvent("click", {bubbles: true, cancelable: true,
                                                   view: window}));
  }
  function legendLabel(figure, text) {
    var found = Array.prototype.find.call(figure.querySelectorAll(".role-legend-label text"),
      function (label) { return label.textContent === text; });
    if (!found) { throw new Error("no legend entry " + text); }
    return found;
  }
  var result = {stages: []};
  function finish(error) {
    if (error) { result.error = String(error); }
    var out = document.createElement("pre");
    out.id = "probe-result";
    out.textContent = JSON.stringify(result);
    document.body.appendChild(out);
  }
  function steps(figures) {
    var cost = Array.prototype.find.call(figures, function (figure) {
      return /training time/.test(figure.textContent);
    });
    return [
      function () { fire(legendLabel(figures[0], FIRST)); return "first"; },
      function () { fire(legendLabel(cost, SECOND)); return "second"; },
      function () { fire(figures[0].querySelector("svg")); return "cleared"; },
    ];
  }
  function run(todo) {
    if (!todo.length) { finish(); return; }
    try {
      var name = todo[0]();
      setTimeout(function () { result.stages.push(snapshot(name)); run(todo.slice(1)); }, 300);
    } catch (error) { finish(error); }
  }
  (function wait() {
    if (!document.body.hasAttribute("data-linked-charts")) { setTimeout(wait, 50); return; }
    result.linked = parseInt(document.body.getAttribute("data-linked-charts"), 10);
    result.stages.push(snapshot("before"));
    run(steps(document.querySelectorAll("figure.chart")));
  })();
})();
"""


def _highlighted(figure: dict, arm: str) -> bool:
    """Every mark of `arm` is more opaque than every mark of any other arm."""
    others = [o for name, values in figure["arms"].items() if name != arm for o in values]
    return min(figure["arms"][arm]) > max(others)


@pytest.mark.slow
def test_clicking_an_arm_in_a_legend_highlights_it_in_every_chart(smoke_report, tmp_path):
    import html as html_lib
    import json

    text = smoke_report.read_text(encoding="utf-8")
    arms = ["spatial", "se"]  # neither is the baseline, so both are in the effect chart too
    probe = _PROBE % {"first": json.dumps(arms[0]), "second": json.dumps(arms[1])}
    head, tail = text.rsplit("</body>", 1)  # the last one: the vega bundle holds the string too
    page = tmp_path / "probe.html"
    page.write_text(f"{head}<script>{probe}</script></body>{tail}", encoding="utf-8")

    dom = _browse(page, tmp_path / "profile", "--dump-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    found = re.search(r'<pre id="probe-result">(.*?)</pre>', dom.stdout, re.S)
    assert found, "the probe did not finish"
    result = json.loads(html_lib.unescape(found[1]))
    assert "error" not in result, result["error"]
    figures = text.count('<figure class="chart">')
    assert result["linked"] == figures  # every chart of this run shows arms
    stages = {stage["name"]: stage["figures"] for stage in result["stages"]}
    assert list(stages) == ["before", "first", "second", "cleared"]

    for figure in stages["before"]:
        assert len(figure["arms"]) >= 4, figure["title"]  # marks are labelled with their arm
        assert len({max(values) for values in figure["arms"].values()}) == 1, figure
    # One click in the learning curves' legend: that arm stands out in every chart.
    for figure in stages["first"]:
        assert _highlighted(figure, arms[0]), (figure["title"], figure["arms"])
    # A click in another chart's legend moves the highlight everywhere, the curves included.
    for figure in stages["second"]:
        assert _highlighted(figure, arms[1]), (figure["title"], figure["arms"])
    for figure in stages["cleared"]:
        assert len({max(values) for values in figure["arms"].values()}) == 1, figure
    # Each seed's own marks on the curves carry its seed, epoch and value (the tooltip's text).
    curves = stages["before"][0]
    assert any(re.search(r"\bseed: \d", label) and re.search(r"\bepoch: \d", label)
               and re.search(r"\bval_acc: 0\.\d{4}\b", label)
               for label in curves["labels"]), curves["labels"][:5]
