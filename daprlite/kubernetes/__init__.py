"""daprlite's side of the Kubernetes API: the client, resources from the cluster, watches.

Only ``--mode kubernetes`` and ``secretstores.kubernetes`` import this package;
its driver, ``kubernetes_asyncio``, is the optional extra ``daprlite[kubernetes]``.
"""
