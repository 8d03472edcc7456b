"""The Kubernetes admission webhook that adds a daprlite sidecar to annotated pods.

``annotations`` reads and checks the pod's annotations, ``patch`` turns them
into a JSON Patch (a pure function), and ``server`` answers the API server's
AdmissionReview requests over HTTPS.
"""

from __future__ import annotations

from daprlite.injector.annotations import InjectionError, Resources, SidecarSpec, read_spec
from daprlite.injector.patch import InjectorConfig, JsonPatchOp, build_patch

__all__ = [
    "InjectionError",
    "InjectorConfig",
    "JsonPatchOp",
    "Resources",
    "SidecarSpec",
    "build_patch",
    "read_spec",
]
