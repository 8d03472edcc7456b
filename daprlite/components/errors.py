"""Domain errors that components raise.

Components know nothing of HTTP or gRPC: they raise these, and the building
blocks (``daprlite.blocks``) map them onto catalogue errors (``daprlite.errors``).
"""

from __future__ import annotations


class ComponentError(Exception):
    """Any failure inside a component."""


class MetadataError(ComponentError):
    """A component's metadata is missing a field or holds a bad value.

    The message names the field and what was expected; the runtime adds the
    file and the resource name.
    """

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"metadata field {field!r}: {problem}")
        self.field = field
        self.problem = problem


class MissingDriverError(ComponentError):
    """The optional driver package of a component is not installed."""

    def __init__(self, component_type: str, module: str, extra: str) -> None:
        super().__init__(
            f"component type {component_type!r} needs the Python package {module!r}; "
            f"install it with: pip install 'daprlite[{extra}]'"
        )
        self.extra = extra


class ETagMismatchError(ComponentError):
    """The etag given does not match the stored one (or the key is missing)."""


class ETagInvalidError(ComponentError):
    """The etag given is not in a format this store could ever have issued."""


class NotSupportedError(ComponentError):
    """The component does not offer the requested capability."""
