"""How daprlite reaches the Kubernetes API server.

Used before start-up step 2 in ``--mode kubernetes`` (resources come from the
cluster) and by ``secretstores.kubernetes``. The client is
``kubernetes_asyncio``'s, configured from a kubeconfig file when ``KUBECONFIG``
is set (a developer's laptop, and the tests, which point it at their stand-in
API server) and otherwise from the pod's service account: its token and CA
under :data:`SERVICE_ACCOUNT_DIR` and ``KUBERNETES_SERVICE_HOST``/``_PORT``.
Every problem is a :class:`KubernetesConfigError` naming what is missing.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from kubernetes_asyncio.client import ApiClient

SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")


class KubernetesConfigError(Exception):
    """The API server cannot be reached with what this process was given."""


def _import_error(exc: ModuleNotFoundError) -> KubernetesConfigError:
    return KubernetesConfigError(
        f"talking to the Kubernetes API needs the Python package {exc.name!r}; "
        "install it with: pip install 'daprlite[kubernetes]'"
    )


def pod_namespace(explicit: str = "") -> str:
    """``explicit``, else ``$NAMESPACE``, else the service account's namespace file; or ''."""
    if explicit:
        return explicit
    env = os.environ.get("NAMESPACE", "")
    if env:
        return env
    try:
        return (SERVICE_ACCOUNT_DIR / "namespace").read_text(encoding="utf-8").strip()
    except OSError:
        return ""


def _in_cluster_problem() -> str:
    """What keeps the in-cluster configuration from working, or '' when nothing does."""
    missing = [
        name
        for name in ("KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT")
        if not os.environ.get(name)
    ]
    if missing:
        return (
            f"not running in a Kubernetes pod ({' and '.join(missing)} not set) and KUBECONFIG "
            "is not set; set KUBECONFIG to a kubeconfig file to run outside a cluster"
        )
    for name in ("token", "ca.crt"):
        path = SERVICE_ACCOUNT_DIR / name
        if not path.is_file() or path.stat().st_size == 0:
            return (
                f"service account file {path} is missing or empty; mount the pod's "
                "service account token (automountServiceAccountToken must not be false)"
            )
    return ""


async def api_client(kubeconfig: str = "") -> ApiClient:
    """A new client: from ``kubeconfig`` (or ``$KUBECONFIG``) if given, else in-cluster.

    The caller closes it (``await client.close()``).
    """
    try:
        from kubernetes_asyncio import client, config
    except ModuleNotFoundError as exc:
        raise _import_error(exc) from exc
    configuration = client.Configuration()
    path_list = kubeconfig or os.environ.get("KUBECONFIG", "")
    try:
        if path_list:
            paths = [p for p in path_list.split(os.pathsep) if p]
            if not any(Path(p).expanduser().is_file() for p in paths):
                raise KubernetesConfigError(f"kubeconfig file {path_list!r} does not exist")
            await config.load_kube_config(
                config_file=path_list, client_configuration=configuration, persist_config=False
            )
        else:
            problem = _in_cluster_problem()
            if problem:
                raise KubernetesConfigError(problem)
            config.load_incluster_config(
                client_configuration=configuration,
                token_filename=str(SERVICE_ACCOUNT_DIR / "token"),
                cert_filename=str(SERVICE_ACCOUNT_DIR / "ca.crt"),
            )
    except config.ConfigException as exc:
        source = f"kubeconfig {path_list!r}" if path_list else "in-cluster configuration"
        raise KubernetesConfigError(f"{source}: {exc}") from exc
    return client.ApiClient(configuration)


def api_error_text(exc: BaseException) -> str:
    """A short description of a failed API call: status and the Status object's message.

    Never the response headers or the request: they may carry the bearer token.
    """
    status = getattr(exc, "status", None)
    if status is None:
        return f"{type(exc).__name__}: {exc}"
    message = str(getattr(exc, "reason", "") or "")
    body = getattr(exc, "body", None)
    if body:
        try:
            doc = json.loads(body)
        except ValueError:
            doc = None
        if isinstance(doc, dict) and isinstance(doc.get("message"), str):
            message = doc["message"]
    return f"HTTP {status}: {message}" if message else f"HTTP {status}"
