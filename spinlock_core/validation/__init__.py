"""Checks of generated data (balance, layout, sample quality, features) as plain functions on
in-memory arrays; the storage layer gates writes with them and the assets render them."""

from .balance import BalanceReport, label_balance
from .report import CheckDef, CheckReport, markdown_table
from .stage_checks import (
    CHECKS,
    checks_for,
    dataset_checks,
    feature_checks,
    initial_condition_checks,
    parameter_checks,
    rollout_checks,
)

__all__ = [
    "BalanceReport",
    "label_balance",
    "CheckDef",
    "CheckReport",
    "markdown_table",
    "CHECKS",
    "checks_for",
    "parameter_checks",
    "initial_condition_checks",
    "rollout_checks",
    "feature_checks",
    "dataset_checks",
]
