"""``secretstores.local.file``: secrets read from a JSON file, for development.

The runtime starts secret stores first (start-up step 3) so that other
components' ``secretKeyRef`` entries resolve through them; the secrets block
(``/v1.0/secrets/...``) calls the same :class:`SecretStore` contract. The file
is read once, at init, in a worker thread; nested objects are flattened to
``parent{nestedSeparator}child`` keys and array items to their index, as in
Dapr. With ``multiValued`` each top-level key is one secret holding many
values. Never use it in production: the file is plain text.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass

from daprlite.components.errors import ComponentError, MetadataError
from daprlite.components.metadata import ComponentMetadata, decode, setting
from daprlite.components.secretstores._jsonfile import SecretsFileError, load_secrets

_log = logging.getLogger("daprlite.component.secretstores")

# Dapr's feature flag for stores whose secrets hold several key/value pairs.
MULTIPLE_KEY_VALUES_PER_SECRET = "MULTIPLE_KEY_VALUES_PER_SECRET"


@dataclass(frozen=True, slots=True)
class LocalFileSettings:
    """Component metadata of ``secretstores.local.file``, with Dapr's (case-insensitive) names."""

    secretsFile: str = setting(
        required=True,
        doc="The JSON file holding the secrets. A relative path is relative to the sidecar's "
        "working directory; `~` is expanded.",
    )
    nestedSeparator: str = setting(
        ":", doc="Joins the keys of nested objects and array indexes; empty means `:`."
    )
    multiValued: bool = setting(
        False,
        doc="Each top-level key is one secret whose (flattened) object is returned as its "
        "values, instead of every flattened key being a secret of its own.",
    )


class LocalFileSecretStore:
    """All secrets of one JSON file, held in memory from init to close."""

    def __init__(self) -> None:
        self.settings = LocalFileSettings()
        self._name = ""
        self._secrets: dict[str, dict[str, str]] = {}

    async def init(self, metadata: ComponentMetadata) -> None:
        self.settings = decode(LocalFileSettings, metadata.properties)
        self._name = metadata.name
        separator = self.settings.nestedSeparator or ":"  # Dapr treats empty as the default
        try:
            path, self._secrets = await asyncio.to_thread(
                load_secrets, self.settings.secretsFile, separator, self.settings.multiValued
            )
        except SecretsFileError as exc:
            raise MetadataError("secretsFile", str(exc)) from None
        _log.info(
            "secret store %s: loaded %d secrets from %s", self._name, len(self._secrets), path
        )

    def features(self) -> frozenset[str]:
        if self.settings.multiValued:
            return frozenset({MULTIPLE_KEY_VALUES_PER_SECRET})
        return frozenset()

    async def get_secret(self, key: str, metadata: Mapping[str, str]) -> dict[str, str]:
        values = self._secrets.get(key)
        if values is None:
            raise ComponentError(f"secret {key} not found")
        return dict(values)  # a copy: callers must not change the store

    async def bulk_get_secret(self, metadata: Mapping[str, str]) -> dict[str, dict[str, str]]:
        return {name: dict(values) for name, values in self._secrets.items()}

    async def close(self) -> None:
        self._secrets = {}
