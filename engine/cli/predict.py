"""``retain predict``: how well the churn predictions would have done on the shop's history."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Annotated

import typer
from rich.table import Table

from . import AsJson, app, engine_for, out, print_json, settings, user_errors

predict_app = typer.Typer(help="Check the per-customer predictions.", no_args_is_help=True)
app.add_typer(predict_app, name="predict")


@predict_app.command("evaluate")
@user_errors
def evaluate_command(
    split: Annotated[str, typer.Option("--split", help="Predict as of this date (YYYY-MM-DD); "
                                       "what happened from it on is held out.")],
    horizon: Annotated[int | None, typer.Option(
        "--horizon", min=7, max=730, help="Days after the split (default predict.horizon_days).")
    ] = None,
    as_json: AsJson = False,
) -> None:
    """Precision, recall, error rate, miss rate and AUC of the churn risk against what really
    happened after a split, beside the recency rule. Example: retain predict evaluate
    --split 2026-01-01 --horizon 90"""
    from engine.views import predictions

    try:
        day = date.fromisoformat(split)
    except ValueError:
        raise typer.BadParameter(f'"{split}" is not a date; write 2026-01-01') from None
    cfg = settings()
    report = predictions.evaluate(engine_for(cfg), cfg, day, datetime.now(UTC), horizon)
    if as_json:
        print_json(report)
        return
    out.print(f"{report['customers']} customers with an order before {report['split']}; "
              f"{report['leavers']} placed none in the {report['horizon_days']} days from it.",
              markup=False)
    table = Table("score", "flags when", "flagged", "precision", "recall", "error rate",
                  "miss rate", "F1", "AUC")
    for row in report["scores"]:
        table.add_row(row["score"], row["rule"], str(row["flagged"]),
                      *(_pct(row[k]) for k in ("precision", "recall", "error_rate",
                                               "miss_rate", "f1")), f"{row['auc']:.3f}")
    out.print(table)
    out.print(f"calibration: {report['model'].get('calibration')}", markup=False)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f} %"
