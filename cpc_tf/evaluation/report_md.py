"""report.md from an evaluation's metrics dictionary."""

from __future__ import annotations

import os
from typing import Any

from cpc_tf.evaluation.sources import LEVELS


def _fmt(stat: dict[str, Any] | None) -> str:
    if not stat or stat.get("mean") is None:
        return "n/a"
    if stat["n"] > 1:
        return f"{stat['mean']:.4f} ± {stat['std']:.4f}"
    return f"{stat['mean']:.4f}"


def render_markdown(result: dict[str, Any], config_text: str = "") -> str:
    """report.md from the metrics dictionary (plus the run's config when known)."""
    res = result["results"]
    names = list(res)
    st = result["settings"]
    lines = [
        f"# Evaluation report: {result['model'] or os.path.basename(result['embeddings'])}",
        "",
    ]
    lines.append(f"- embeddings: `{result['embeddings']}` (dimension {res['model']['dim']})")
    if result["run"]:
        lines.append(f"- run folder: `{result['run']}`")
    for name in names[1:]:
        lines.append(f"- {name}: `{res[name]['path']}` ({res[name]['model'] or 'unnamed'})")
    lines.append(
        f"- task: {result['task']}, {len(result['classes'])} classes: "
        + ", ".join(result["classes"][:30])
        + (" ..." if len(result["classes"]) > 30 else "")
    )
    lines.append(f"- split: {result['split']['description']}")
    lines.append(f"- probe: {_probe_text(st)}; reduction: {st['reduce']}")
    lines.append(f"- probe seeds: {st['seeds']} (split seed {st['split_seed']})")
    metric = result["primary_metric"]
    n_runs = res["model"]["crop"][metric]["n"] if res["model"]["crop"] else 0
    lines += ["", "## Headline", ""] + _headline(result, metric, n_runs)
    pooled = st.get("pool", "none") != "none"
    file_text = (
        f"file level probes one row per file, the {st['pool'].replace('_', ' and ')} of its crop "
        "embeddings"
        if pooled
        else "file level averages the crop probabilities of each file"
    )
    lines += [
        "",
        "## Results",
        "",
        f"Mean ± standard deviation over {n_runs} run(s) (splits × seeds). Crop level probes every "
        f"embedded crop; {file_text}.",
        "",
    ]
    lines.append("| metric | level | " + " | ".join(names) + " |")
    lines.append("|---|---|" + "---|" * len(names))
    for level in LEVELS:
        for metric in res["model"][level]:
            cells = [_fmt(res[n][level].get(metric)) for n in names]
            lines.append(f"| {metric} | {level} | " + " | ".join(cells) + " |")

    lines += [
        "",
        "## Splits",
        "",
        "| split | train files | train crops | test files | test crops |",
        "|---|---|---|---|---|",
    ]
    for s in result["split"]["splits"]:
        lines.append(
            f"| {s['name']} | {s['train_files']} | {s['train_crops']} | {s['test_files']} | "
            f"{s['test_crops']} |"
        )

    eff = result["data_efficiency"]
    if eff:
        lines += [
            "",
            "## Data efficiency",
            "",
            f"{metric} (crop level) with class-balanced subsets of the training files "
            "(Spijkervet & Burgoyne 2021, §4.4).",
            "",
            "| label fraction | " + " | ".join(eff) + " |",
            "|---|" + "---|" * len(eff),
        ]
        fracs = sorted({f for v in eff.values() for f in v}, key=float)
        for f in fracs:
            cells = [_fmt(eff[n].get(f, {}).get("crop", {}).get(metric)) for n in eff]
            lines.append(f"| {float(f):g} | " + " | ".join(cells) + " |")

    figs = result["figures"]
    captions = {
        "confusion_matrix.png": "Confusion matrix (sums to 1; row sums = class frequencies, "
        "column sums = how often each class is predicted)",
        "confusion_matrix_baseline.png": "Confusion matrix of the baseline",
        "tsne_classes.png": "t-SNE coloured by class, train and test panels",
        "tsne_train_test.png": "t-SNE per class, train against test",
        "probe_curves.png": "Probe loss and score per epoch",
        "pretrain_loss.png": "Pre-training loss from the run's history.csv",
        "data_efficiency.png": "Score against the fraction of labels used",
    }
    if figs:
        lines += ["", "## Figures", ""]
        for name in figs:
            lines += [f"### {captions.get(name, name)}", "", f"![{name}]({figs[name]})", ""]
    if result["warnings"]:
        lines += ["", "## Warnings", ""] + [f"- {w}" for w in result["warnings"]]
    if result["notes"]:
        lines += ["", "## Notes", ""] + [f"- {n}" for n in result["notes"]]
    if config_text:
        lines += ["", "## Run configuration", "", "```yaml", config_text.rstrip(), "```"]
    return "\n".join(lines).rstrip() + "\n"


def _probe_text(st: dict[str, Any]) -> str:
    if st["classifier"] == "logistic":
        grid = ", ".join(f"{c:g}" for c in st.get("logistic_c", []))
        return (
            f"logistic regression on standardised features, trained to convergence, L2 strength "
            f"chosen by {st.get('logistic_folds', 3)}-fold cross-validation by file on the "
            f"training side (C in {grid})"
        )
    es = (
        f", early stopping patience {st['early_stopping_patience']}"
        if st["early_stopping_patience"]
        else ""
    )
    return (
        f"{st['classifier']}, {st['probe_epochs']} epochs, Adam lr {st['probe_learning_rate']:g}, "
        f"batch {st['probe_batch_size']}, dropout {st['probe_dropout']:g}, "
        f"weight decay {st['probe_weight_decay']:g}{es}"
    )


def _headline(result: dict[str, Any], metric: str, n_runs: int) -> list[str]:
    """The model against its baselines at file level, and what the differences mean."""
    res = result["results"]
    lines = [
        f"File-level {metric}, mean ± standard deviation over {n_runs} run(s).",
        "",
        f"| representation | {metric} (file) | {metric} (crop) |",
        "|---|---|---|",
    ]
    for name, r in res.items():
        label = "**model**" if name == "model" else name
        lines.append(f"| {label} | {_fmt(r['file'].get(metric))} | {_fmt(r['crop'].get(metric))} |")
    comparison = result.get("comparison", [])
    if comparison:
        lines.append("")
    for c in comparison:
        verdict = (
            "beyond the spread: a real difference"
            if c["beyond_spread"]
            else "within the spread: no evidence of a difference"
        )
        lines.append(
            f"- model − {c['baseline']}: {c['difference']:+.4f} ({verdict}; twice the combined "
            f"standard deviation is {c['two_sigma']:.4f})"
        )
    if not comparison and len(res) == 1:
        lines += [
            "",
            "- no baseline was evaluated: give `--baseline` "
            "(random init, `extract --features mfcc`)",
        ]
    return lines


def _plain(stat: dict[str, Any] | None) -> str:
    if not stat or stat.get("mean") is None:
        return "n/a"
    return f"{stat['mean']:.3f} ± {stat['std']:.3f}" if stat["n"] > 1 else f"{stat['mean']:.3f}"


def headline_table(result: dict[str, Any]) -> list[str]:
    """The headline for a terminal: each representation's file and crop score, and the verdicts.

    The same numbers as the top of report.md (:func:`_headline`), as aligned plain text.
    """
    metric = result["primary_metric"]
    verdicts = {c["baseline"]: c for c in result.get("comparison", [])}
    rows = [("representation", f"{metric} (file)", f"{metric} (crop)", "model minus this row")]
    for name, r in result["results"].items():
        c = verdicts.get(name)
        verdict = (
            ""
            if c is None
            else (
                f"{c['difference']:+.3f}, "
                f"{'beyond' if c['beyond_spread'] else 'within'} the spread "
                f"(2σ {c['two_sigma']:.3f})"
            )
        )
        rows.append((name, _plain(r["file"].get(metric)), _plain(r["crop"].get(metric)), verdict))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    return [
        ("  ".join(cell.ljust(w) for cell, w in zip(row[:3], widths)) + "  " + row[3]).rstrip()
        for row in rows
    ]
