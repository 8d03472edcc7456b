"""``secretstores.local.env``: secrets from the sidecar's environment variables.

The embedded default secret store that ``daprlite init`` writes (DESIGN.md,
D3). The runtime starts it first (start-up step 3) so that other components'
``secretKeyRef`` entries resolve through it; the secrets block calls the same
:class:`SecretStore` contract. Variables are read live on every call, with an
optional name ``prefix`` that the secret names do not carry. The sidecar's own
credentials (``APP_API_TOKEN``, ``DAPR_API_TOKEN`` and every other ``DAPR_*``
variable) are never returned.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass

from daprlite.components.errors import ComponentError, MetadataError
from daprlite.components.metadata import ComponentMetadata, decode, setting

_log = logging.getLogger("daprlite.component.secretstores")


@dataclass(frozen=True, slots=True)
class LocalEnvSettings:
    """Component metadata of ``secretstores.local.env``, with Dapr's (case-insensitive) names."""

    prefix: str = setting(
        "",
        doc="Only variables whose names start with this (case-sensitive) are secrets; the "
        "secret name is the variable name without it. Empty means every variable.",
    )

    def __post_init__(self) -> None:
        if _reserved(self.prefix):
            raise MetadataError(
                "prefix",
                f"{self.prefix!r} selects only DAPR_* variables, which are reserved for the "
                "sidecar and never returned; choose another prefix",
            )


def _reserved(variable: str) -> bool:
    # Case-insensitive, as in Dapr: the sidecar's tokens must not leak under any spelling.
    upper = variable.upper()
    return upper == "APP_API_TOKEN" or upper.startswith("DAPR_")


class LocalEnvSecretStore:
    """Environment variables as single-valued secrets ``{name: value}``."""

    def __init__(self) -> None:
        self.settings = LocalEnvSettings()
        self._name = ""

    async def init(self, metadata: ComponentMetadata) -> None:
        self.settings = decode(LocalEnvSettings, metadata.properties)
        self._name = metadata.name
        _log.info(
            "secret store %s: environment variables with prefix %r",
            self._name,
            self.settings.prefix,
        )

    def features(self) -> frozenset[str]:
        return frozenset()

    async def get_secret(self, key: str, metadata: Mapping[str, str]) -> dict[str, str]:
        variable = self.settings.prefix + key
        # Dapr answers an unset variable with an empty string. We fail instead: a typo in
        # a secretKeyRef then stops start-up with the secret's name, rather than starting
        # a component with an empty password that fails later, far from the cause. The
        # reserved variables get the same answer, so nothing tells whether they are set.
        # An empty name would read the variable named exactly the prefix; bulk skips it too.
        value = None if not key or _reserved(variable) else os.environ.get(variable)
        if value is None:
            raise ComponentError(f"secret {key} not found")
        return {key: value}

    async def bulk_get_secret(self, metadata: Mapping[str, str]) -> dict[str, dict[str, str]]:
        prefix = self.settings.prefix
        out: dict[str, dict[str, str]] = {}
        for variable, value in os.environ.items():
            # len > len(prefix): a variable named exactly the prefix has no secret name.
            named = variable.startswith(prefix) and len(variable) > len(prefix)
            if named and not _reserved(variable):
                name = variable[len(prefix) :]
                out[name] = {name: value}
        return out

    async def close(self) -> None:
        """Nothing to release: the store holds no copy of the environment."""
