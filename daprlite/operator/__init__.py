"""The daprlite operator: one headless Service ``<app-id>-daprlite`` per annotated workload.

``daprlite operator`` watches Deployments and StatefulSets in every namespace
and keeps, for each whose pod template asks for a sidecar, the Service that
Kubernetes name resolution (``nameresolution.kubernetes``) looks up. The pure
part — workload in, Service out — is :func:`desired_service`; the loop around
it is :class:`Reconciler`; :func:`serve` runs both with the health endpoint.
Imports ``kubernetes_asyncio`` (the ``kubernetes`` extra).
"""

from __future__ import annotations

from daprlite.operator.desired import (
    DEPLOYMENT,
    MANAGED_BY,
    MANAGED_BY_LABEL,
    SIDECAR_PORTS,
    STATEFULSET,
    DesiredService,
    WorkloadError,
    WorkloadKey,
    WorkloadKind,
    desired_service,
    service_patch,
)
from daprlite.operator.reconcile import Reconciler
from daprlite.operator.server import OperatorOptions, serve

__all__ = [
    "DEPLOYMENT",
    "MANAGED_BY",
    "MANAGED_BY_LABEL",
    "SIDECAR_PORTS",
    "STATEFULSET",
    "DesiredService",
    "OperatorOptions",
    "Reconciler",
    "WorkloadError",
    "WorkloadKey",
    "WorkloadKind",
    "desired_service",
    "serve",
    "service_patch",
]
