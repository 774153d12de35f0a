"""Which variants diverged under which numeric precision.

Why its own view: the spoken-digit study ("Impact of Attention Mechanisms in Deep Learning",
Part B) lost its float16 runs to inf losses and concluded that attention is numerically
fragile. Whether that holds is a question about a (variant, precision) grid, not about one
mean: the summary's per-label status counts hide the pattern (diverging in fp16 only, or in
every precision for one network) that the reader needs.
"""

from __future__ import annotations

from typing import Any

import polars as pl

from analysis.load import Run

PRECISION_COLUMN = "cfg.train.precision"
NAMED_VARIANT_COLUMN = "cfg.variant"
# The order precisions are listed in, from safest to most fragile.
PRECISION_ORDER = ("fp32", "bf16", "fp16", "fp16_pure")


def _variant_without_precision(label: str, precision: str | None) -> str:
    """``variant=cbam,precision=fp16`` -> ``cbam``; a label without it is kept as it is."""
    parts = [p for p in label.split(",") if p != f"precision={precision}"]
    if len(parts) == 1 and "=" in parts[0]:
        return parts[0].split("=", 1)[1]
    return ",".join(parts) or "(all)"


def divergence_table(run: Run) -> pl.DataFrame:
    """One row per (variant, precision): trials, how many diverged, and where.

    ``where`` lists "epoch E step S" per diverged trial (the first divergence check that saw
    a non-finite loss), in seed order. Empty when the run has no trials.
    """
    trials = run.trials
    schema = {"variant": pl.String(), "precision": pl.String(), "n": pl.Int64(),
              "diverged": pl.Int64(), "where": pl.String()}
    if trials.height == 0:
        return pl.DataFrame(schema=schema)
    precision = (pl.col(PRECISION_COLUMN).cast(pl.String) if PRECISION_COLUMN in trials.columns
                 else pl.lit("fp32"))
    frame = trials.with_columns(precision.fill_null("fp32").alias("_precision"))
    rows: list[dict[str, Any]] = []
    for (label, prec), group in frame.group_by(["variant", "_precision"], maintain_order=True):
        name = (str(group[NAMED_VARIANT_COLUMN][0])
                if NAMED_VARIANT_COLUMN in group.columns and group[NAMED_VARIANT_COLUMN][0]
                else _variant_without_precision(str(label), prec))
        diverged = group.filter(pl.col("status") == "diverged").sort("seed", nulls_last=True)
        where = [
            f"epoch {e} step {s}" if e is not None else "epoch ?"
            for e, s in zip(diverged["diverged_epoch"].to_list(),
                            diverged["diverged_step"].to_list(), strict=True)
        ]
        rows.append({"variant": name, "precision": prec, "n": group.height,
                     "diverged": diverged.height, "where": "; ".join(where)})
    rank = {p: i for i, p in enumerate(PRECISION_ORDER)}
    first_seen = {v: i for i, v in enumerate(dict.fromkeys(r["variant"] for r in rows))}
    rows.sort(key=lambda r: (first_seen[r["variant"]], rank.get(r["precision"], len(rank)),
                             r["precision"]))
    return pl.DataFrame(rows, schema=schema)


def divergence_sentences(table: pl.DataFrame) -> list[str]:
    """The table in plain words: which variants diverged under which precision, and which
    precisions were clean. Empty when nothing diverged (nothing worth a sentence)."""
    hit = table.filter(pl.col("diverged") > 0)
    if hit.height == 0:
        return []
    lines = [
        f"{r['variant']} diverged under {r['precision']} in {r['diverged']} of {r['n']} "
        f"trial(s) ({r['where']})"
        for r in hit.iter_rows(named=True)
    ]
    clean = [p for p in dict.fromkeys(table["precision"].to_list())
             if p not in set(hit["precision"].to_list())]
    if clean:
        lines.append("no trial diverged under " + ", ".join(clean))
    return lines


def divergence_matrix(table: pl.DataFrame) -> tuple[list[str], list[list[str]]]:
    """(headers, rows): variants down, precisions across, cells "diverged/n"."""
    rank = {p: i for i, p in enumerate(PRECISION_ORDER)}
    precisions = sorted(dict.fromkeys(table["precision"].to_list()),
                        key=lambda p: (rank.get(p, len(rank)), p))
    cells = {(r["variant"], r["precision"]): f"{r['diverged']}/{r['n']}"
             for r in table.iter_rows(named=True)}
    variants = list(dict.fromkeys(table["variant"].to_list()))
    rows = [[v, *(cells.get((v, p), "—") for p in precisions)] for v in variants]
    return ["diverged/n", *precisions], rows


def format_divergence(run: Run) -> str:
    """Terminal text: the diverged/n matrix and the sentences, or "" when nothing diverged."""
    table = divergence_table(run)
    sentences = divergence_sentences(table)
    if not sentences:
        return ""
    headers, rows = divergence_matrix(table)
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    text = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                      for i, (c, w) in enumerate(zip(line, widths, strict=True)))
            for line in [headers, *rows]]
    return "\n".join(["divergence by precision:", *text, *(f"- {s}" for s in sentences)])
