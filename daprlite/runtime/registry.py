"""The component store: the live, initialised components of one sidecar.

The processor (``runtime.processor``) fills it at start-up; blocks look their
components up here by category and name. It also answers the metadata API's
question "what is loaded, and with which capabilities".
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class LiveComponent:
    """One initialised component with the facts the blocks and metadata API need."""

    name: str
    type: str
    version: str
    category: str
    instance: object
    properties: Mapping[str, str] = field(default_factory=dict)  # resolved; may hold secrets
    capabilities: tuple[str, ...] = ()

    def property(self, key: str, default: str = "") -> str:
        low = key.lower()
        return next((v for k, v in self.properties.items() if k.lower() == low), default)


class ComponentStore:
    """Live components by (category, name), in load order."""

    def __init__(self) -> None:
        self._items: dict[tuple[str, str], LiveComponent] = {}

    def add(self, component: LiveComponent) -> None:
        self._items[(component.category, component.name)] = component

    def get(self, category: str, name: str) -> LiveComponent | None:
        return self._items.get((category, name))

    def remove(self, category: str, name: str) -> LiveComponent | None:
        """Take a component out (a reload removed it); the caller closes it."""
        return self._items.pop((category, name), None)

    def of_category(self, category: str) -> list[LiveComponent]:
        return [c for (cat, _), c in self._items.items() if cat == category]

    def __iter__(self) -> Iterator[LiveComponent]:
        return iter(list(self._items.values()))

    def __len__(self) -> int:
        return len(self._items)
