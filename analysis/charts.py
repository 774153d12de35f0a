"""Altair charts of a run, and their rendering into HTML that opens offline.

Altair's own HTML output loads vega/vega-lite/vega-embed from a CDN, which is useless on
cluster nodes and air-gapped laptops. So charts are rendered to inline SVG with
`vl_convert` (the `vl-convert-python` package, which bundles the vega JavaScript) where it
is importable; otherwise the Vega-Lite spec is embedded as inert JSON beside a visible note,
so the numbers are still in the file and a later re-render can pick them up.
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import polars as pl

from analysis.load import Run
from analysis.summary import OK_STATUSES

if TYPE_CHECKING:  # altair is imported lazily: `import analysis` should stay fast.
    import altair as alt

__all__ = ["can_render_svg", "chart_html", "embed_script", "seed_spread_chart", "val_curves_chart"]

_WIDTH = 560
# Variant label for epoch rows whose trial is not (yet) in trials.parquet.
_ORPHAN = "(not in trials)"
RENDER_PACKAGE = "vl-convert-python"


def can_render_svg() -> bool:
    """Whether charts can be inlined as SVG (needs the `vl_convert` module)."""
    try:
        import vl_convert  # noqa: F401
    except ImportError:
        return False
    return True


def _json_rows(df: pl.DataFrame) -> list[dict[str, Any]]:
    """Rows for an inline Vega-Lite dataset; NaN and inf become null (JSON has neither)."""
    floats = [name for name, dtype in df.schema.items() if dtype.is_float()]
    cleaned = df.with_columns(
        pl.when(pl.col(name).is_finite()).then(pl.col(name)).otherwise(None).alias(name)
        for name in floats
    )
    return cleaned.to_dicts()


def val_curves_chart(run: Run, order: Sequence[str]) -> alt.Chart | None:
    """Validation accuracy per epoch, one line per trial, coloured by variant.

    Every trial is drawn, diverged ones included: where a curve falls apart is the point.
    Returns None when no epoch has a validation accuracy yet.
    """
    import altair as alt

    labels = run.trials.select("trial_id", "variant", "seed", "status")
    epochs = (
        run.epochs.select("trial_id", "epoch", "val_acc")
        .join(labels, on="trial_id", how="left")
        .with_columns(pl.col("variant").fill_null(_ORPHAN))
    )
    rows = [r for r in _json_rows(epochs) if r["val_acc"] is not None and r["epoch"] is not None]
    if not rows:
        return None
    orphans = [_ORPHAN] if any(r["variant"] == _ORPHAN for r in rows) else []
    colour = alt.Color("variant:N", scale=alt.Scale(domain=[*order, *orphans]))
    return (
        alt.Chart(alt.Data(values=rows), title="Validation accuracy per epoch (one line per trial)")
        .mark_line(point=True, strokeWidth=1.5)
        .encode(
            x=alt.X("epoch:Q", title="epoch", axis=alt.Axis(tickMinStep=1)),
            y=alt.Y("val_acc:Q", title="val acc", scale=alt.Scale(zero=False)),
            color=colour,
            detail="trial_id:N",
            tooltip=["trial_id:N", "variant:N", "seed:O", "status:N", "epoch:Q", "val_acc:Q"],
        )
        .properties(width=_WIDTH, height=300)
    )


def seed_spread_chart(
    run: Run, summary: pl.DataFrame, order: Sequence[str],
    colours: Mapping[str, str] | None = None,
) -> alt.LayerChart | None:
    """Test accuracy per variant: one dot per seed, mean ± std, and the reported number.

    Dots make seed noise visible next to the gap between variants; the reported number is a
    red diamond so that "reproduced or not" reads at a glance. Only ok/early_stopped trials
    are dotted, matching the means. Dots take the arms' `colours` (default
    `plots.arm_colours(order)`); clicking one selects its arm in every chart of the page.
    Returns None when there is nothing to draw.
    """
    import altair as alt

    from analysis.plots import _arm_opacity, _arm_scale, _arm_selection, arm_colours

    seeds = _json_rows(
        run.trials.filter(
            pl.col("status").is_in(OK_STATUSES) & pl.col("test_acc").is_not_null()
        ).select("trial_id", "variant", "seed", "status", "test_acc")
    )
    stats = _json_rows(
        summary.filter(pl.col("test_acc_mean").is_not_null()).select(
            "variant",
            "test_acc_mean",
            (pl.col("test_acc_mean") - pl.col("test_acc_std").fill_null(0.0)).alias("lo"),
            (pl.col("test_acc_mean") + pl.col("test_acc_std").fill_null(0.0)).alias("hi"),
        )
    )
    reported = (
        _json_rows(
            summary.filter(pl.col("reported_test_acc").is_not_null()).select(
                "variant", "reported_test_acc"
            )
        )
        if summary.schema.get("reported_test_acc") == pl.Float64
        else []
    )
    if not seeds and not reported:
        return None

    y = alt.Y("variant:N", title=None, scale=alt.Scale(domain=list(order)),
              axis=alt.Axis(labelLimit=180))
    x_title = "test acc"
    x_axis = alt.Axis(labelOverlap="greedy", labelSeparation=6)
    palette = arm_colours(order) if colours is None else colours
    colour = alt.Color("variant:N", scale=_arm_scale(palette, [r["variant"] for r in seeds]),
                       legend=None)
    acc = ".4f"
    layers: list[alt.Chart] = []
    if seeds:
        layers.append(
            alt.Chart(alt.Data(values=seeds))
            .mark_circle(size=70)
            .encode(
                x=alt.X("test_acc:Q", title=x_title, scale=alt.Scale(zero=False), axis=x_axis),
                y=y,
                yOffset=alt.YOffset("seed:N"),  # deterministic jitter: one lane per seed
                color=colour,
                opacity=_arm_opacity(0.8, 0.12),
                tooltip=["variant:N", alt.Tooltip("seed:O", title="seed"),
                         alt.Tooltip("test_acc:Q", title="test acc", format=acc),
                         "status:N", alt.Tooltip("trial_id:N", title="trial")],
            )
        )
    if stats:
        base = alt.Chart(alt.Data(values=stats)).encode(y=y, opacity=_arm_opacity(1.0, 0.2))
        layers.append(
            base.mark_rule(color="black", strokeWidth=1.5).encode(
                x=alt.X("lo:Q", title=x_title, axis=x_axis), x2="hi:Q"
            )
        )
        layers.append(
            base.mark_tick(color="black", thickness=2.5, size=22).encode(
                x=alt.X("test_acc_mean:Q", title=x_title, axis=x_axis),
                tooltip=["variant:N", alt.Tooltip("test_acc_mean:Q", title="mean", format=acc),
                         alt.Tooltip("lo:Q", title="mean - std", format=acc),
                         alt.Tooltip("hi:Q", title="mean + std", format=acc)],
            )
        )
    if reported:
        layers.append(
            alt.Chart(alt.Data(values=reported))
            .mark_point(shape="diamond", filled=True, color="#d62728", size=120)
            .encode(
                x=alt.X("reported_test_acc:Q", title=x_title, axis=x_axis),
                y=y,
                opacity=_arm_opacity(1.0, 0.2),
                tooltip=["variant:N", alt.Tooltip("reported_test_acc:Q", title="reported",
                                                  format=acc)],
            )
        )
    layers[0] = layers[0].add_params(_arm_selection(legend=False))
    return alt.layer(*layers, title="Test accuracy per variant").properties(
        width=_WIDTH, height=alt.Step(34)
    )


def chart_html(chart: alt.TopLevelMixin, *, vl_version: str | None = None) -> str:
    """One chart as an HTML fragment with no external resources.

    The figure holds the Vega-Lite spec as inert JSON (`<script type="application/json">`,
    never executed by itself) and, where `vl_convert` is importable, a static SVG rendering
    of it. The report's inlined vega-embed bundle (`embed_script`) then replaces the SVG with
    the interactive chart (tooltips); without JavaScript the static SVG stays. A rendering
    failure degrades to the spec and a note instead of losing the whole report.
    """
    spec = chart.to_dict()
    problem = f"Install {RENDER_PACKAGE} and write the report again to draw it."
    static = ""
    if can_render_svg():
        try:
            import vl_convert

            static = _strip_xml_prolog(vl_convert.vegalite_to_svg(json.dumps(spec)))
        except Exception as exc:  # a chart must not cost the tables
            problem = f"Rendering with vl_convert failed: {exc}"
    if not static:
        static = (f'<p class="note">Chart not drawn, embedded as a Vega-Lite spec. '
                  f"{html.escape(problem)}</p>")
    # "</script>" or "<!--" inside a script element would derail the HTML parser; "\u003c"
    # is the same JSON string with no "<" in it.
    payload = json.dumps(spec).replace("<", "\\u003c")
    return (f'<figure class="chart"><div class="vega-target">{static}</div>'
            f'<script type="application/json" class="vega-lite-spec">{payload}</script>'
            "</figure>")


# Runs once the page has loaded: every figure's spec becomes an interactive chart. A figure
# gets class "rendered" (or "render-failed", keeping its static SVG), which tests read.
#
# Then the charts are linked: Vega-Lite selections live in one view, so every view with the
# shared "arm" selection (analysis.plots.ARM_PARAM) gets a listener that copies the arms
# chosen there into the selection store of every other view. `current` (the arms last
# copied) stops the echo: a view that receives the arms reports them back unchanged. When
# all views are linked, <body> gets data-linked-charts="N" (N views), which tests read.
_EMBED_INIT = """
(function () {
  var ARM = "arm", STORE = "arm_store", FIELDS = "arm_tuple_fields";
  var linked = [], current = "[]";

  function armsOf(view) {
    var value = view.signal(ARM) || {};
    return (value.variant || []).filter(function (arm) { return arm != null; });
  }
  function keyOf(arms) { return JSON.stringify(arms.map(String).sort()); }
  function setArms(view, arms) {
    var fields = view.signal(FIELDS);
    var tuples = arms.map(function (arm) { return {unit: "", fields: fields, values: [arm]}; });
    var change = view.changeset().remove(function () { return true; }).insert(tuples);
    view.change(STORE, change).runAsync();
  }
  function link(view) {
    try { view.signal(ARM); view.data(STORE); } catch (error) { return; }
    linked.push(view);
    view.addSignalListener(ARM, function () {
      var arms = armsOf(view), key = keyOf(arms);
      if (key === current) { return; }
      current = key;
      linked.forEach(function (other) {
        if (other !== view && keyOf(armsOf(other)) !== key) { setArms(other, arms); }
      });
    });
  }

  var embeds = Array.prototype.map.call(document.querySelectorAll("figure.chart"),
    function (figure) {
      var target = figure.querySelector(".vega-target");
      var spec = JSON.parse(figure.querySelector("script.vega-lite-spec").textContent);
      var fallback = target.innerHTML;
      target.innerHTML = "";
      return vegaEmbed(target, spec, {renderer: "svg", actions: false}).then(function (result) {
        figure.classList.add("rendered");
        return result.view;
      }).catch(function (error) {
        target.innerHTML = fallback;
        figure.classList.add("render-failed");
        figure.setAttribute("data-error", String(error));
        return null;
      });
    });
  Promise.all(embeds).then(function (views) {
    views.forEach(function (view) { if (view) { link(view); } });
    document.body.setAttribute("data-linked-charts", String(linked.length));
  });
})();
"""


def embed_script() -> str:
    """`<script>` elements with the vega, vega-lite and vega-embed JavaScript inlined (about
    0.9 MB, from `vl_convert`) plus the code that draws every figure; "" where the bundle is
    unavailable (the static SVGs then stand alone)."""
    try:
        import vl_convert

        bundle = vl_convert.javascript_bundle()
    except Exception:
        return ""
    # Neither sequence may appear inside an inline script; "<\/" is "</" to JavaScript.
    bundle = bundle.replace("</script", "<\\/script").replace("<!--", "<\\!--")
    return f"<script>{bundle}</script>\n<script>{_EMBED_INIT}</script>"


def _strip_xml_prolog(svg: str) -> str:
    """Drop an `<?xml ...?>` line, which is not allowed inside an HTML document."""
    svg = svg.lstrip()
    if svg.startswith("<?xml"):
        svg = svg.split("?>", 1)[1].lstrip()
    return svg
