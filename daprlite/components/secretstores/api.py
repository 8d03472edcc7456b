"""The secret store contract.

The runtime loads secret stores before every other component so that
``secretKeyRef`` entries in other manifests can be resolved through them
(start-up step 3). The secrets building block uses the same contract.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol, runtime_checkable

from daprlite.components.metadata import ComponentMetadata


@runtime_checkable
class SecretStore(Protocol):
    async def init(self, metadata: ComponentMetadata) -> None: ...

    def features(self) -> frozenset[str]: ...

    async def get_secret(self, key: str, metadata: Mapping[str, str]) -> dict[str, str]:
        """The secret's values by name; raises ComponentError when it does not exist."""
        ...

    async def bulk_get_secret(self, metadata: Mapping[str, str]) -> dict[str, dict[str, str]]: ...

    async def close(self) -> None: ...
