"""``daprlite init``: write the embedded default components to ``~/.daprlite/components``.

The defaults need no external service and use Dapr's default component names
(``statestore``, ``pubsub``), so apps written against ``dapr init``'s defaults run unchanged.
Existing files are left alone: they may hold the user's edits.
"""

from __future__ import annotations

from pathlib import Path

from daprlite.config.options import daprlite_home
from daprlite.security.ca import ca_exists, create_ca, write_ca

STATESTORE = """\
# Written by `daprlite init`: the embedded default state store.
# A durable SQLite file (WAL mode); nothing else to install.
apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: statestore
spec:
  type: state.sqlite
  version: v1
  metadata:
    - name: connectionString
      value: "{db}"
    # Key/value pairs saved with ttlInSeconds expire; expired rows are swept hourly.
    - name: cleanupInterval
      value: 1h
"""


SECRETSTORE = """\
# Written by `daprlite init`: secrets from this process's environment variables.
# Only variables starting with the prefix are visible (prefix stripped), and
# DAPR_* / APP_API_TOKEN never are. Use it in other components with
#   secretKeyRef: {name: <NAME>, key: <NAME>}   and   auth: {secretStore: envsecrets}
apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: envsecrets
spec:
  type: secretstores.local.env
  version: v1
  metadata:
    - name: prefix
      value: "DAPRLITE_SECRET_"
"""

PUBSUB = """\
# Written by `daprlite init`: the embedded default pub/sub broker.
# One SQLite file shared by every sidecar on this machine, so apps started with
# separate `daprlite run` commands exchange messages with nothing else installed.
apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: pubsub
spec:
  type: pubsub.sqlite
  version: v1
  metadata:
    - name: connectionString
      value: "{pubsub_db}"
"""

DEFAULTS = {
    "statestore.yaml": ("state.sqlite", STATESTORE),
    "pubsub.yaml": ("pubsub.sqlite", PUBSUB),
    "secretstore.yaml": ("secretstores.local.env", SECRETSTORE),
}


def init(home: Path | None = None, renew_ca: bool = False) -> list[str]:
    """Create the default folder layout and the local CA; returns the lines to print."""
    root = home or daprlite_home()
    components = root / "components"
    data = root / "data"
    components.mkdir(parents=True, exist_ok=True)
    data.mkdir(parents=True, exist_ok=True)
    (root / "run").mkdir(parents=True, exist_ok=True)
    lines = []
    for filename, (ctype, template) in DEFAULTS.items():
        target = components / filename
        if target.exists():
            lines.append(f"ℹ️  {target} already exists; left unchanged")
            continue
        text = template.replace("{db}", str(data / "state.db"))
        text = text.replace("{pubsub_db}", str(data / "pubsub.db"))
        target.write_text(text, encoding="utf-8")
        lines.append(f"✅  Wrote {target} ({ctype})")
    lines.append(_init_ca(root / "certs", renew_ca))
    lines.append(f"✅  Success! daprlite is up and running. Components are in {components}")
    return lines


def _init_ca(certs: Path, renew: bool) -> str:
    """The local CA from which every sidecar on this machine issues its mTLS certificate."""
    if ca_exists(certs) and not renew:
        return f"ℹ️  {certs} already holds a CA; left unchanged (--renew-ca replaces it)"
    write_ca(create_ca(), certs)
    return f"✅  Created the mTLS certificate authority in {certs} (sidecars use mTLS from now on)"
