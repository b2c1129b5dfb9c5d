"""Parameter counts of a config's model, per component (`cpc_tf summary`)."""

from __future__ import annotations

from cpc_tf.config import Config


def component_counts(cfg: Config) -> list[tuple[str, int, int]]:
    """(component, trainable, total incl. non-trainable such as BN statistics) rows.

    Builds the model (no data is touched) and counts each sub-model's variables.
    """
    from cpc_tf.models.factory import build_model
    from cpc_tf.models.registry import check_fits, count_params

    check_fits(cfg)
    model = build_model(cfg)
    names = (
        ["frontend", "encoder", "autoregressor", "predictors"]
        if cfg.model.family == "cpc"
        else ["frontend", "augmenter", "encoder", "projector"]
    )
    rows = []
    for name in names:
        layer = getattr(model, name, None)
        if layer is None:
            continue
        trainable, total = count_params(layer)
        rows.append((name, trainable, total))
    trainable, total = count_params(model)
    rows.append(("total", trainable, total))
    return rows


def format_counts(cfg: Config, rows: list[tuple[str, int, int]]) -> str:
    """A small aligned table."""
    desc = f"{cfg.name}: {cfg.model.family} · encoder {cfg.model.encoder}" + (
        f" · autoregressor {cfg.model.autoregressor}" if cfg.model.family == "cpc" else ""
    )
    lines = [desc, f"{'component':<15}{'trainable':>14}{'total (incl. BN stats)':>26}"]
    for name, trainable, total in rows:
        if name == "total":
            lines.append("-" * 55)
        lines.append(f"{name:<15}{trainable:>14,}{total:>26,}")
    return "\n".join(lines)
