"""One conformance suite for every secret store.

Each test runs against every store in ``conftest.STORE_TYPES``, seeded with the
same secrets, and checks what an app (or a ``secretKeyRef``) sees: values by
name, a clear error for an unknown name, bulk reads that return exactly what
was seeded, and string values whatever the source's types.
"""

from __future__ import annotations

import pytest

from daprlite.components.errors import ComponentError
from daprlite.components.secretstores.api import SecretStore
from tests.conformance.secretstores.conftest import EXPECTED, StoreUnderTest


def test_store_implements_the_secret_store_contract(sut: StoreUnderTest) -> None:
    assert isinstance(sut.store, SecretStore)


def test_single_valued_store_advertises_no_features(sut: StoreUnderTest) -> None:
    # Seeded as one value per secret, so MULTIPLE_KEY_VALUES_PER_SECRET must not be claimed.
    assert sut.store.features() == frozenset()


async def test_get_existing_secret_returns_exactly_its_name_and_value(
    sut: StoreUnderTest,
) -> None:
    for name, value in EXPECTED.items():
        assert await sut.store.get_secret(name, {}) == {name: value}


async def test_values_are_strings_even_when_seeded_as_numbers_or_booleans(
    sut: StoreUnderTest,
) -> None:
    assert await sut.store.get_secret("port", {}) == {"port": "6379"}
    assert await sut.store.get_secret("ratio", {}) == {"ratio": "0.25"}
    assert await sut.store.get_secret("enabled", {}) == {"enabled": "true"}
    bulk = await sut.store.bulk_get_secret({})
    assert all(isinstance(v, str) for values in bulk.values() for v in values.values())


async def test_empty_secret_is_found_with_an_empty_value(sut: StoreUnderTest) -> None:
    assert await sut.store.get_secret("empty", {}) == {"empty": ""}


async def test_get_unknown_secret_raises_not_found(sut: StoreUnderTest) -> None:
    with pytest.raises(ComponentError, match=r"^secret no-such-secret not found$"):
        await sut.store.get_secret("no-such-secret", {})


async def test_secret_names_are_case_sensitive(sut: StoreUnderTest) -> None:
    with pytest.raises(ComponentError, match="not found"):
        await sut.store.get_secret("DBPASSWORD", {})


async def test_bulk_returns_every_seeded_secret_and_nothing_else(sut: StoreUnderTest) -> None:
    bulk = await sut.store.bulk_get_secret({})
    assert bulk == {name: {name: value} for name, value in EXPECTED.items()}


async def test_changing_a_returned_map_does_not_change_the_store(sut: StoreUnderTest) -> None:
    # The secrets block filters bulk results by scope; that must not delete secrets.
    got = await sut.store.get_secret("api_key", {})
    got["api_key"] = "tampered"
    bulk = await sut.store.bulk_get_secret({})
    bulk.pop("dbPassword")
    bulk["api_key"]["api_key"] = "tampered"
    assert await sut.store.get_secret("api_key", {}) == {"api_key": "abc123"}
    assert await sut.store.bulk_get_secret({}) == {
        name: {name: value} for name, value in EXPECTED.items()
    }


async def test_close_is_idempotent(sut: StoreUnderTest) -> None:
    await sut.store.close()
    await sut.store.close()  # the fixture closes it a third time
