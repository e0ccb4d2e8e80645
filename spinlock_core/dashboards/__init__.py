"""Dashboards (SPEC 10): matplotlib figures saved as PNG, one module per dashboard.

Each module's ``render(data, out_path, *, dpi=...) -> DashboardResult`` draws from a
:class:`DashboardData` (:mod:`.loading`) with a headless Agg canvas and no pyplot state:

* :mod:`.engineering`: architecture schematic, training curves, utilization, per-category error, metrics;
* :mod:`.topological`: t-SNE of the codebook vectors, centroid cosine similarity, statistics;
* :mod:`.semantic`: feature-to-category matrix, category sizes and families, measured correlation;
* :mod:`.tokens`: code frequencies, AMI with IC type and update policy;
* :mod:`.dataset`: IC gallery, re-simulated rollouts, parameters, balance, feature distributions.

:func:`render_all` renders whatever the inputs allow; :func:`thumbnail_data_uri` makes the small
inline preview the Dagster assets attach.
"""

from .figures import DashboardResult
from .loading import (DashboardData, DashboardInputError, DatasetView, ModelInput, TokenTable, is_checkpoint,
                      is_dataset)
from .render import DASHBOARDS, render_all, render_one
from .thumbnail import thumbnail_data_uri

__all__ = ["DASHBOARDS", "DashboardData", "DashboardInputError", "DashboardResult", "DatasetView", "ModelInput",
           "TokenTable", "is_checkpoint", "is_dataset", "render_all", "render_one", "thumbnail_data_uri"]
