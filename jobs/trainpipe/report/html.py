"""Builds report.html from an output folder's artefacts; called at the end of `trainpipe run` and by `trainpipe report`."""

from __future__ import annotations

import base64
import html
import io
import json
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from trainpipe import __version__
from trainpipe.contract.cut import SymbolCoverage, symbol_warning
from trainpipe.contract.names import Stability
from trainpipe.contract.rankings import RankingsFile, TargetRanking
from trainpipe.contract.selection import SelectionStability
from trainpipe.families.budget import describe as describe_budget
from trainpipe.io.atomic import write_json, write_text
from trainpipe.io.layout import Layout
from trainpipe.io.stage_files import StageFileError, read_rankings, read_selection
from trainpipe.report.evidence import evidence_record, flag_too_good, noise_lines, with_deflated_sharpe, with_timing

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:1200px;color:#1d2330;padding:0 1rem}
h1{font-size:1.6rem;margin-bottom:.2rem} h2{margin-top:2.2rem;border-bottom:1px solid #dde2ea;padding-bottom:.3rem}
.meta{color:#5b6475;font-size:.9rem}
.banner{background:#fff4e5;border-left:4px solid #d9822b;padding:.6rem .8rem;font-size:1rem}
table{border-collapse:collapse;font-size:.85rem;margin:.6rem 0;width:100%}
th,td{border-bottom:1px solid #e8ebf0;padding:.3rem .5rem;text-align:left;vertical-align:top}
th{background:#f4f6f9;position:sticky;top:0} td.num{text-align:right;font-variant-numeric:tabular-nums}
.ok{color:#137333}.bad{color:#b3261e}.muted{color:#7a8496}
.cards{display:flex;gap:1rem;flex-wrap:wrap}.card{background:#f4f6f9;border-radius:8px;padding:.7rem 1rem;min-width:9rem}
.card b{display:block;font-size:1.4rem}
details{margin:.4rem 0} summary{cursor:pointer}
.scroll{overflow-x:auto;max-height:36rem;overflow-y:auto;border:1px solid #e8ebf0;border-radius:6px}
td{white-space:nowrap} td.long{white-space:normal;font-size:.75rem;color:#4a5263;min-width:22rem;max-width:34rem}
img.chart{max-width:100%;border:1px solid #e8ebf0;border-radius:6px;margin:.5rem 0}
"""


def write_report(layout: Layout) -> Path:
    """Write report.html and, beside the routing files, METRICS/model_evidence.json (the deflated Sharpes and noise lines it shows)."""
    ranking = _rankings(layout)
    metrics = _read_metrics(layout, ranking)
    write_json(layout.model_evidence, evidence_record(metrics))
    write_text(layout.report_html, render(layout, ranking, metrics))
    return layout.report_html


def _read_metrics(layout: Layout, ranking: RankingsFile | None) -> pd.DataFrame:
    return with_deflated_sharpe(flag_too_good(with_timing(model_metrics_frame(layout)), ranking.too_good_limits if ranking else None))


def render(layout: Layout, ranking: RankingsFile | None = None, metrics: pd.DataFrame | None = None) -> str:
    ranking = ranking if ranking is not None else _rankings(layout)
    plan = _read_json(layout.master_training_plan)
    metrics = metrics if metrics is not None else _read_metrics(layout, ranking)
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>trainpipe report — {html.escape(str(layout.root))}</title><style>{_CSS}</style></head><body>",
        evidence_banner(ranking),
        "<h1>trainpipe run report</h1>",
        f"<p class='meta'>{html.escape(str(layout.root))} · trainpipe {__version__} · written {datetime.now(UTC).isoformat(timespec='seconds')}</p>",
        _cards(ranking, plan, metrics),
        _cut_section(ranking),
        _ranking_section(ranking, _cross_sectional_irs(layout)),
        _selection_section(layout, ranking),
        _plan_section(plan),
        _models_section(metrics),
        "</body></html>",
    ]
    return "\n".join(p for p in parts if p)


def model_metrics_frame(layout: Layout) -> pd.DataFrame:
    """One row per trained model from models/<job>/<family>/metrics.json, metrics, backtest and timing flattened (bt_…, timing_…)."""
    rows = []
    for path in sorted(layout.models_dir.glob("*/*/metrics.json")):
        raw = _read_json(path)
        if not isinstance(raw, dict):
            continue
        row = {k: v for k, v in raw.items() if not isinstance(v, (dict, list))}
        row["budget"] = describe_budget(raw.get("budget"))
        for section, prefix in (("metrics", ""), ("backtest", "bt_"), ("timing", "timing_")):
            for k, v in (raw.get(section) or {}).items():
                if not isinstance(v, (dict, list)):
                    row[prefix + k] = v
        rows.append(row)
    return pd.DataFrame(rows)


def _rankings(layout: Layout) -> RankingsFile | None:
    """The run's rankings, or None before rank has run (the report then says so; it never fails on a partial run)."""
    try:
        return read_rankings(layout)
    except StageFileError:
        return None


def _read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return None


def _fmt(value) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return "<span class='muted'>–</span>"
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 100 else f"{value:,.0f}"
    if isinstance(value, bool):
        return "✓" if value else ""
    return html.escape(str(value))


def _table(frame: pd.DataFrame, columns: list[str]) -> str:
    columns = [c for c in columns if c in frame.columns]
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = []
    for _, row in frame.iterrows():
        cells = []
        for c in columns:
            v = row[c]
            cls = " class='num'" if isinstance(v, (int, float)) and not isinstance(v, bool) else ""
            if not cls and isinstance(v, str) and len(v) > 60:
                cls = " class='long'"
            cells.append(f"<td{cls}>{_fmt(v)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<div class='scroll'><table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table></div>"


def _cards(ranking: RankingsFile | None, plan, metrics: pd.DataFrame) -> str:
    cards = [
        ("targets ranked", len(ranking.targets) if ranking else 0),
        ("targets kept", len(ranking.selected) if ranking else 0),
        ("symbols", len(ranking.symbols) if ranking else 0),
        ("plan jobs", len(plan["jobs"]) if plan else 0),
        ("models trained", len(metrics)),
        ("models without timing", int((metrics["no_timing"] != "").sum()) if "no_timing" in metrics.columns else 0),
    ]
    return "<div class='cards'>" + "".join(f"<div class='card'><b>{v}</b>{html.escape(k)}</div>" for k, v in cards) + "</div>"


def evidence_banner(ranking: RankingsFile | None) -> str:
    """The report's first line when the run stopped for want of evidence, or trained without it: never a footnote."""
    if ranking is None:
        return ""
    if ranking.no_evidence is not None:
        return f"<p class='banner'><b>No target carries evidence of skill: nothing was trained.</b> {html.escape(ranking.no_evidence)}</p>"
    gate = ranking.evidence
    if ranking.gates_off and gate is not None:
        return ("<p class='banner'><b>Trained with the evidence gates off (evidence.trainAnyway: true)</b>: "
                f"{gate.passed} of {gate.tried} targets carry evidence of skill at a false-discovery rate of {gate.alpha:g}; targets, features "
                "and routes below were kept by their point estimates, and a model's figures may be what noise alone can show.</p>")
    return ""


def _cut_section(ranking: RankingsFile | None) -> str:
    """The run's holdout cut: which bars chose targets, features and routes, and which only scored the models."""
    if ranking is None:
        return ""
    cut = ranking.holdout_cut
    rows = pd.DataFrame([{"symbol": sym, **c.to_wire(), "note": "" if c.coverage is SymbolCoverage.FULL else symbol_warning(sym, c, cut)}
                         for sym, c in cut.symbols.items()])
    rows = rows.rename(columns={"firstTs": "first bar", "lastTs": "last bar", "developmentRows": "development bars", "holdoutRows": "holdout bars"})
    warned = sum(c.coverage is not SymbolCoverage.FULL for c in cut.symbols.values())
    return (f"<h2>Holdout cut</h2><p>Fixed before ranking, one instant for every symbol: the holdout starts at <b>{html.escape(cut.holdout_start)}</b> "
            f"(the latest {cut.fraction:.0%} of the panel's timestamps), and ranking, selection and routing read only bars before "
            f"<b>{html.escape(cut.development_end)}</b>, {cut.purge_bars} bars earlier (longest horizon + embargo). Each model trains on "
            "the bars before the holdout less its own target's horizon and the embargo; only the model metrics below read the holdout."
            + (f" <b>{warned} symbol(s) have a note</b>: no holdout, nothing to train, or a short history.</p>" if warned else "</p>")
            + _table(rows, ["symbol", "first bar", "last bar", "rows", "development bars", "holdout bars", "coverage", "note"]))


def _cross_sectional_irs(layout: Layout) -> dict[str, float]:
    """Each target's cross-sectional IR from rank's fold scores, as routing judges it; none before rank has run."""
    from trainpipe.stages.candidates import cross_sectional_irs

    try:
        return cross_sectional_irs(pd.read_parquet(layout.oos_scores_parquet, columns=["target", "symbol", "score", "ir"]))
    except (OSError, KeyError, ValueError):  # not ranked yet, or ranked by a trainpipe that kept no IR
        return {}


def _ranking_section(ranking: RankingsFile | None, cs_irs: dict[str, float]) -> str:
    if ranking is None:
        return "<h2>Target ranking</h2><p class='muted'>Ranking has not run.</p>"
    table = pd.DataFrame([row.model_dump(mode="json") for row in ranking.targets], columns=list(TargetRanking.model_fields))
    table["cs_ir"] = [cs_irs.get(t, float("nan")) for t in table["target"]]
    cols = ["rank", "target", "task", "metric_name", "score", "ic", "rank_ic", "cs_ir", "r2", "auc", "lgbm_score", "linear_score",
            "consistency", "composite", "composite_low", "evidence", "n_samples", "n_folds", "status", "reason", "selected"]
    chart = _chart_ranking(table)
    leaks = pd.DataFrame([leak.model_dump(mode="json") for leak in ranking.leaks])
    leak_note = ("<p>No feature leaked a label not yet known at its row.</p>" if leaks.empty else
                 "<p><b>Leaking features left every target's pool</b> (a feature tracking any target's unresolved label):</p>"
                 + _table(leaks, ["feature", "target", "shift", "method", "correlation", "bound"]))
    gate = ranking.evidence
    gated = ("" if gate is None else
             f"A target is kept only with evidence: its composite's lower bound (composite_low, one-sided {gate.level:.1%}, counted at "
             "one independent period per horizon) clears zero, corrected for the targets tried (Benjamini–Hochberg at "
             f"{gate.alpha:g}): {gate.passed} of {gate.tried} do. ")
    suspects = ("" if not ranking.suspects else "<p><b>Suspect features</b> (top features of a target too good to be true that a rescan found "
                "no leak in; they stay in the pool): " + html.escape(", ".join(ranking.suspects)) + ". Check how they are built.</p>")
    return ("<h2>Target ranking</h2><p>Purged walk-forward out-of-sample scores (LightGBM and a linear baseline) on the rows "
            "before the holdout cut; composite = mean skill × (0.5 + 0.5 × share of folds with positive skill). "
            + gated +
            "cs_ir = (mean − no skill) / sd of the per-timestamp cross-sectional scores (rank IC, or AUC for labels), "
            "averaged over folds: how steadily the cross-sectional score routing judges holds from one timestamp to the next; "
            "blank without a cross-section.</p>"
            + leak_note + suspects + chart + _table(table, cols))


def _selection_section(layout: Layout, ranking: RankingsFile | None) -> str:
    out = ["<h2>Selected features</h2>"]
    for target in ranking.selected if ranking else []:
        try:
            sel = read_selection(layout, target)
        except StageFileError:
            continue  # not selected yet: the report shows what exists
        stab = sel.stability
        try:
            scores = pd.read_parquet(layout.feature_scores(target))
        except (FileNotFoundError, OSError):
            scores = pd.DataFrame()
        out.append(f"<details><summary><b>{html.escape(target)}</b> — {len(sel.features)} features; stability "
                   f"{html.escape(stab.state.label)}</summary>")
        out.append(f"<p>{_stability_line(stab)}</p>")
        out.append("<p>" + ", ".join(html.escape(f) for f in sel.features) + "</p>")
        if not scores.empty:
            out.append(_table(scores.head(25), list(scores.columns)))
        out.append("</details>")
    return "".join(out)


def _stability_line(stab: SelectionStability) -> str:
    """Each check's state and numbers, or why it was not made; routing reads the worse of the two made."""
    prev, res = stab.against_previous, stab.resampled
    against = "" if prev.previous_run is None else f" {html.escape(prev.previous_run)}"
    previous = (f"against the previous run{against}: {html.escape(prev.state.label)} (overlap {_fmt(prev.overlap)}, τ {_fmt(prev.kendall_tau)})"
                if prev.state is not Stability.UNKNOWN else f"against the previous run: {html.escape(prev.state.label)} — {html.escape(prev.note or '')}")
    resampled = (f"on {res.resamples} block-bootstrap resamples ({res.block_bars}-bar blocks): {html.escape(res.state.label)} "
                 f"(mean overlap {_fmt(res.overlap)}, mean τ {_fmt(res.kendall_tau)})" if res.resamples
                 else f"resampled: {html.escape(res.state.label)} — {html.escape(res.note or '')}")
    return f"{previous}; {resampled}"


def _plan_section(plan) -> str:
    if not plan:
        return "<h2>Training plan</h2><p class='muted'>No plan yet.</p>"
    jobs = pd.DataFrame(plan["jobs"])
    if jobs.empty:
        return "<h2>Training plan</h2><p>The plan has no jobs.</p>"
    # Plans written by earlier versions spell their keys in camelCase.
    jobs = jobs.rename(columns={"jobId": "job_id", "trainingType": "training_type", "modelFamilies": "model_families", "estimatedSamples": "estimated_samples"})
    jobs["model_families"] = jobs["model_families"].map(lambda fams: ", ".join(fams))
    jobs["features"] = jobs["features"].map(len)
    summary = plan.get("summary", {})
    routes = ", ".join(f"{html.escape(k)}: {v}" for k, v in (summary.get("by_route") or summary.get("byRoute") or {}).items())
    return (f"<h2>Training plan</h2><p>{len(jobs)} jobs — {routes}</p>"
            + _table(jobs, ["job_id", "target", "symbol", "route", "training_type", "priority", "estimated_samples", "features", "model_families", "reason"]))


# Figures shown as "value [low, high]": their 95% intervals from metrics.json.
_WITH_INTERVAL = ("ic", "rank_ic", "r2", "auc", "hit_rate", "balanced_accuracy", "brier", "brier_skill", "log_loss", "bt_sharpe",
                  "bt_long_only_excess_sharpe")


_INTERVALS_NOTE = (
    "<p>Brackets hold 95% intervals; n_eff counts the holdout's independent periods (timestamps / horizon), because "
    "overlapping labels are not independent rows. The Sharpe averages every rebalance phase; bt_sharpe_se is its "
    "standard error and bt_dsr its deflated Sharpe: the probability that its skill beats the best that this run's "
    "number of models would show on noise (above 0.95 is evidence).</p>"
)

_FIGURES_NOTE = (
    "<p>Figures that match the job. For cross-sectional jobs ic, rank_ic, auc and hit_rate are per-timestamp figures "
    "averaged over timestamps (how well the model ranks the symbols of one timestamp; a hit is a symbol called above "
    "its timestamp's median that ends above it, 0.5 without skill); the pooled ones, over all rows at once, stand "
    "beside them as *_pooled, where a symbol that rises more often than another passes for skill. Classifiers add "
    "the Brier score (brier_skill: 1 − Brier / the base rate's, 0 without skill) and the log loss beside the base "
    "rate's. The long/short backtest (bt_sharpe) is judged against zero; the long-only one against buy-and-hold "
    "(bt_long_only_excess_sharpe, the Sharpe of its return over bt_baseline_sharpe's). Every backtest figure is net "
    "of bt_cost_bps basis points on the value each rebalance trades (bt_sharpe_gross before costs).</p>"
)


def _with_intervals(metrics: pd.DataFrame) -> pd.DataFrame:
    """Each figure of `_WITH_INTERVAL` beside its interval, as text; a metrics.json without intervals keeps the bare value."""
    out = metrics.copy()
    for col in _WITH_INTERVAL:
        if col not in out.columns or f"{col}_low" not in out.columns:
            continue
        out[col] = [v if lo is None or hi is None or pd.isna(lo) or pd.isna(hi) or pd.isna(v) else f"{v:.3f} [{lo:.3f}, {hi:.3f}]"
                    for v, lo, hi in zip(out[col], out[f"{col}_low"], out[f"{col}_high"], strict=True)]
    return out


def _noise_section(metrics: pd.DataFrame) -> str:
    lines = noise_lines(metrics)
    if not lines:
        return ""
    return ("<p><b>The best model against selection on noise.</b> Picking the best of N models picks noise's maximum too; "
            "each line gives that maximum (the expected best of N figures with no skill, from the models' own standard errors; "
            "models of one run share their data, so it is an upper bound).</p><ul>"
            + "".join(f"<li>{html.escape(line.sentence())}</li>" for line in lines) + "</ul>")


def _models_section(metrics: pd.DataFrame) -> str:
    if metrics.empty:
        return "<h2>Models</h2><p class='muted'>No model trained yet.</p>"
    metrics = metrics.sort_values([c for c in ("target", "job_id", "family") if c in metrics.columns])
    chart = _chart_families(metrics)
    cols = ["job_id", "target", "symbol", "family", "stage", "device", "budget", "n_train", "n_test", "n_eff", "no_timing", "ic", "rank_ic", "r2",
            "auc", "hit_rate", "hit_rate_baseline", "ic_pooled", "auc_pooled", "hit_rate_pooled", "balanced_accuracy", "brier", "brier_baseline",
            "brier_skill", "log_loss", "log_loss_baseline", "bt_sharpe", "bt_sharpe_se", "bt_dsr", "bt_sharpe_gross", "bt_cost_bps",
            "bt_long_only_excess_sharpe", "bt_long_only_sharpe", "bt_baseline_sharpe", "bt_mean_return", "bt_turnover", "too_good",
            "train_seconds", "peak_rss_mb"]
    flagged = int((metrics["too_good"] != "").sum()) if "too_good" in metrics.columns else 0
    warning = f"<p><b>{flagged} model(s) score too well on the holdout to be believed</b> (column too_good).</p>" if flagged else ""
    untimed = int((metrics["no_timing"] != "").sum()) if "no_timing" in metrics.columns else 0
    if untimed:
        warning += (f"<p><b>{untimed} of {len(metrics)} model(s) have no timing</b> (column no_timing): constant predictions, or a position "
                    "that never changes on the holdout, so their Sharpe is the market's (buy-and-hold's, or a fixed spread's), not the "
                    "model's. They are never picked as the best, get no deflated Sharpe, and are left out of the family charts.</p>")
    return ("<h2>Models</h2><p>Metrics on the run's holdout (every bar from the holdout start above, the same instant for every model; never a shuffled split), "
            "each beside its no-skill baseline: the majority-class hit rate, balanced accuracy, and the buy-and-hold or "
            "equal-weight long Sharpe over the same periods (annualised with the bars per year measured on the data).</p>"
            + _FIGURES_NOTE + _INTERVALS_NOTE + _noise_section(metrics) + warning + chart + _table(_with_intervals(metrics), cols))


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return f"<img class='chart' alt='chart' src='data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}'>"


def _chart_ranking(table: pd.DataFrame) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = table.dropna(subset=["composite"])
    if data.empty:
        return ""
    fig, ax = plt.subplots(figsize=(8, 0.4 * len(data) + 1.2))
    colors = ["#1a73e8" if s else "#9aa0a6" for s in data["selected"]]
    ax.barh(data["target"], data["composite"], color=colors)
    ax.invert_yaxis()
    ax.axvline(0, color="#333", lw=0.8)
    ax.set_xlabel("composite out-of-sample skill (blue = kept)")
    ax.set_title("Target ranking")
    return _png(fig)


def _chart_families(metrics: pd.DataFrame) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    score = "rank_ic" if "rank_ic" in metrics.columns else None
    if "no_timing" in metrics.columns:
        metrics = metrics[metrics["no_timing"] == ""]  # a family's mean is a ranking: models without timing are not in it
    if score is None or "family" not in metrics.columns or metrics.empty:
        return ""
    fig, axes = plt.subplots(1, 2 if "bt_sharpe" in metrics.columns else 1, figsize=(11, 3.8), squeeze=False)
    by_family = metrics.groupby("family")[score].mean().sort_values()
    axes[0][0].barh(by_family.index, by_family.to_numpy(), color="#1a73e8")
    axes[0][0].axvline(0, color="#333", lw=0.8)
    axes[0][0].set_title("Mean holdout rank IC per family (models with timing)")
    if "bt_sharpe" in metrics.columns:
        sharpe = metrics.groupby("family")["bt_sharpe"].mean().reindex(by_family.index)
        axes[0][1].barh(sharpe.index, sharpe.to_numpy(), color="#188038")
        axes[0][1].axvline(0, color="#333", lw=0.8)
        axes[0][1].set_title("Mean long/short Sharpe net of costs per family (models with timing)")
    fig.tight_layout()
    return _png(fig)
