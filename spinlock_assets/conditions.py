"""Declarative automation: when the daemon rebuilds what, by itself.

The conditions are evaluated by Dagster's ``default_automation_condition_sensor`` (UI: Automation
-> turn the sensor on; ``make ui`` starts the daemon that runs it). Nothing here rebuilds data that
is up to date:

- :data:`PARAMETERS`: re-sampled when its code version (the sampling sections of the config or the
  sampler's version) changed.
- :data:`SHARD` (initial conditions, rollouts, every feature family, per partition): rebuilt when
  the stage's code version changed (its code version is the stage version plus a hash of the config
  sections the stage reads, so a config edit counts), when the data version of an input changed
  (a re-sampled parameter file, a regenerated initial-condition shard), or when a shard newly goes
  missing (a larger ``total_samples``). Never while an input is missing or being written.
- :data:`REFRESH` (``dataset``, ``feature_matrix``, ``tokens``, dashboards, the check report):
  Dagster's ``eager``: once an upstream update has landed and no upstream shard is missing or in
  progress, so a full rebuild of every shard gives one refresh at its end, not one per shard.
- :data:`TOKENIZER`: training is expensive and changes every token: weekly (Sunday 05:00 UTC),
  and only when its input (``feature_matrix``) changed since the last tick; otherwise by hand.

The first build of an experiment is a backfill (conditions act on changes after they exist).
"""

from __future__ import annotations

import dagster as dg

__all__ = ["PARAMETERS", "SHARD", "REFRESH", "TOKENIZER", "TOKENIZER_CRON"]

AC = dg.AutomationCondition

PARAMETERS = (
    (AC.code_version_changed() | AC.newly_missing()).since_last_handled() & ~AC.in_progress()
).with_label("parameters: code version changed")

SHARD = (
    (AC.code_version_changed() | AC.newly_missing() | AC.any_deps_match(AC.data_version_changed()))
    .since_last_handled()
    .with_label("code version, config or input data changed")
    & ~AC.any_deps_missing()
    & ~AC.any_deps_in_progress()
    & ~AC.in_progress()
).with_label("shard: rebuild on change")

REFRESH = AC.eager().with_label("refresh after upstream updates")

TOKENIZER_CRON = "0 5 * * 0"
TOKENIZER = AC.on_cron(TOKENIZER_CRON, "UTC").with_label("weekly, when its input changed")
