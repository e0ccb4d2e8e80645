"""Checks of generated data (balance, layout) as plain functions; assets turn them into asset checks."""

from .balance import BalanceReport, label_balance

__all__ = ["BalanceReport", "label_balance"]
