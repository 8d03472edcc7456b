"""``bindings.localstorage``: an output binding that keeps files under one directory.

``blocks.bindings`` calls :meth:`LocalStorageBinding.invoke` for ``POST
/v1.0/bindings/{name}`` with the operations ``create``, ``get``, ``list`` and
``delete``; request metadata ``fileName`` names a file relative to the
component's ``rootPath``. Callers are untrusted, so nothing they send may reach
outside that directory: a ``fileName`` with ``..`` segments, an absolute path
or a NUL byte is refused, and every path is walked one component at a time
from an open directory handle with ``O_NOFOLLOW`` (``openat`` style), so a
symbolic link anywhere on the way — even one pointing inside the root — is
refused rather than followed, and a directory swapped for a link during the
call cannot redirect it. All file I/O runs in a worker thread; ``create``
writes a temporary file and renames it, so readers never see half a file.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import errno
import json
import logging
import os
import stat
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass

from daprlite.components.bindings.api import (
    InvokeRequest,
    InvokeResponse,
    UnsupportedOperationError,
)
from daprlite.components.errors import ComponentError, MetadataError
from daprlite.components.metadata import ComponentMetadata, decode, setting

_log = logging.getLogger("daprlite.component.bindings")

_OPERATIONS = ("create", "get", "list", "delete")
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# O_NONBLOCK: opening a FIFO someone left in the root must not hang a worker.
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
_TEMP_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_FIELD = "fileName"


@dataclass(frozen=True, slots=True)
class LocalStorageSettings:
    """Component metadata of ``bindings.localstorage``."""

    rootPath: str = setting(
        required=True,
        doc="Directory that holds the files; created if missing. Requests can never reach "
        "outside it.",
    )


def file_parts(name: str) -> list[str]:
    """The path segments of a caller's ``fileName``; raises MetadataError on any escape attempt.

    ``.`` and empty segments are dropped; ``..``, absolute paths and NUL bytes
    are refused rather than clamped, so a caller learns its request was wrong.
    Names such as ``..%2fx`` or ``..\\x`` are ordinary (odd) file names here.
    """
    if "\x00" in name:
        raise MetadataError(_FIELD, "must not contain NUL bytes")
    if os.path.isabs(name):
        raise MetadataError(_FIELD, f"must be relative to the binding's root, got {name!r}")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise MetadataError(_FIELD, f"must not contain '..' segments, got {name!r}")
    return parts


def decode_payload(data: bytes) -> bytes:
    """Dapr's create payload rules: unquote a JSON string literal, then base64-decode if valid.

    HTTP callers' ``data`` arrives JSON-encoded, so ``"aGk="`` (with quotes)
    becomes ``aGk=`` and then ``hi``. As in Dapr, any text that happens to be
    valid base64 (``test``, say) is decoded too.
    """
    if data[:1] == b'"':
        try:
            text = json.loads(data)
        except ValueError:
            text = None
        if isinstance(text, str):
            data = text.encode()
    try:
        # Go's StdEncoding ignores CR and LF; everything else must be strict base64.
        return base64.b64decode(data.replace(b"\r", b"").replace(b"\n", b""), validate=True)
    except (binascii.Error, ValueError):
        return data


class _Root:
    """Blocking, race-free file operations under one real directory. Run them in a thread."""

    def __init__(self, path: str, component: str) -> None:
        self.path = path  # already realpath'ed
        self.component = component

    # -- walking ----------------------------------------------------------------------
    def _contained(self, parts: Sequence[str]) -> None:
        """A first, cheap check: the fully resolved path must stay under the root.

        The descriptor walk below is what actually enforces it (and refuses
        links inside the root too); this names the problem clearly.
        """
        real = os.path.realpath(os.path.join(self.path, *parts))
        if os.path.commonpath([self.path, real]) != self.path:
            raise MetadataError(
                _FIELD, f"{'/'.join(parts)!r} resolves outside the root through a symbolic link"
            )

    def _refuse_link(self, parts: Sequence[str]) -> MetadataError:
        return MetadataError(
            _FIELD,
            f"{'/'.join(parts)!r} is a symbolic link; this binding does not follow links",
        )

    def _is_link(self, dir_fd: int, name: str) -> bool:
        try:
            return stat.S_ISLNK(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode)
        except OSError:
            return False

    @contextmanager
    def directory(self, parts: Sequence[str], *, create: bool = False) -> Iterator[int]:
        """An open descriptor of root/parts, never crossing a symbolic link."""
        self._contained(parts)
        fd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            for i, part in enumerate(parts):
                if create:
                    try:
                        os.mkdir(part, 0o777, dir_fd=fd)
                    except FileExistsError:
                        pass
                    except OSError as exc:
                        raise self._os_error(exc, parts[: i + 1]) from None
                try:
                    child = os.open(part, _DIR_FLAGS, dir_fd=fd)
                except OSError as exc:
                    where = parts[: i + 1]
                    if exc.errno == errno.ELOOP or self._is_link(fd, part):
                        raise self._refuse_link(where) from None
                    if exc.errno == errno.ENOENT:
                        raise ComponentError(
                            f"output binding {self.component!r}: directory not found: "
                            f"{'/'.join(where)!r}"
                        ) from None
                    raise self._os_error(exc, where) from None
                os.close(fd)
                fd = child
            yield fd
        finally:
            os.close(fd)

    def _os_error(self, exc: OSError, parts: Sequence[str]) -> ComponentError:
        name = "/".join(parts)
        if exc.errno == errno.ENAMETOOLONG:
            return MetadataError(_FIELD, f"{name!r} is too long")
        if exc.errno == errno.ENOTDIR:
            return ComponentError(f"output binding {self.component!r}: {name!r} is not a directory")
        # strerror only: the exception's own text would name the sidecar's absolute path.
        return ComponentError(f"output binding {self.component!r}: {name!r}: {exc.strerror}")

    def _lstat(self, dir_fd: int, parts: Sequence[str]) -> os.stat_result | None:
        try:
            st = os.stat(parts[-1], dir_fd=dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise self._os_error(exc, parts) from None
        if stat.S_ISLNK(st.st_mode):
            raise self._refuse_link(parts)
        return st

    def _not_found(self, parts: Sequence[str]) -> ComponentError:
        return ComponentError(
            f"output binding {self.component!r}: file not found: {'/'.join(parts)!r}"
        )

    # -- operations ---------------------------------------------------------------------
    def write(self, parts: Sequence[str], data: bytes) -> None:
        with self.directory(parts[:-1], create=True) as dir_fd:
            st = self._lstat(dir_fd, parts)
            if st is not None and stat.S_ISDIR(st.st_mode):
                raise self._os_error(OSError(errno.EISDIR, "Is a directory"), parts)
            temp = f".daprlite-{uuid.uuid4().hex}.tmp"
            try:
                fd = os.open(temp, _TEMP_FLAGS, 0o644, dir_fd=dir_fd)
                try:
                    view = memoryview(data)
                    while view:
                        view = view[os.write(fd, view) :]
                    os.fsync(fd)
                finally:
                    os.close(fd)
                # rename never follows a link at the target: it replaces the name itself.
                os.rename(temp, parts[-1], src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
            except OSError as exc:
                with suppress(OSError):
                    os.unlink(temp, dir_fd=dir_fd)
                raise self._os_error(exc, parts) from None
            os.fsync(dir_fd)

    def read(self, parts: Sequence[str]) -> bytes:
        with self.directory(parts[:-1]) as dir_fd:
            try:
                fd = os.open(parts[-1], _READ_FLAGS, dir_fd=dir_fd)
            except OSError as exc:
                if exc.errno == errno.ELOOP or self._is_link(dir_fd, parts[-1]):
                    raise self._refuse_link(parts) from None
                if exc.errno == errno.ENOENT:
                    raise self._not_found(parts) from None
                raise self._os_error(exc, parts) from None
            # Checked on the open descriptor: what is read is what was checked.
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                os.close(fd)
                raise ComponentError(
                    f"output binding {self.component!r}: {'/'.join(parts)!r} is not a regular file"
                )
            with os.fdopen(fd, "rb") as f:
                return f.read()

    def remove(self, parts: Sequence[str]) -> None:
        with self.directory(parts[:-1]) as dir_fd:
            st = self._lstat(dir_fd, parts)
            if st is None:
                raise self._not_found(parts)
            try:
                if stat.S_ISDIR(st.st_mode):
                    os.rmdir(parts[-1], dir_fd=dir_fd)  # empty directories only, as Go's Remove
                else:
                    os.unlink(parts[-1], dir_fd=dir_fd)
            except FileNotFoundError:
                raise self._not_found(parts) from None
            except OSError as exc:
                raise self._os_error(exc, parts) from None

    def files(self, parts: Sequence[str]) -> list[str]:
        """Every regular file under root/parts, as paths relative to the root."""
        if parts:
            with self.directory(parts[:-1]) as dir_fd:
                st = self._lstat(dir_fd, parts)
                if st is None:
                    raise ComponentError(
                        f"output binding {self.component!r}: directory not found: "
                        f"{'/'.join(parts)!r}"
                    )
                if stat.S_ISREG(st.st_mode):
                    return ["/".join(parts)]
        out: list[str] = []
        with self.directory(parts) as dir_fd:
            # fwalk never descends through a link; links to files are skipped below,
            # since get could not read them anyway.
            for dirpath, _dirs, names, walk_fd in os.fwalk(
                ".", dir_fd=dir_fd, follow_symlinks=False
            ):
                prefix = [*parts, *(p for p in dirpath.split("/") if p != ".")]
                for name in names:
                    try:
                        st = os.stat(name, dir_fd=walk_fd, follow_symlinks=False)
                    except OSError:
                        continue
                    if stat.S_ISREG(st.st_mode):
                        out.append("/".join([*prefix, name]))
        return sorted(out)


class LocalStorageBinding:
    """Output binding: create, get, list and delete files under ``rootPath``."""

    def __init__(self) -> None:
        self.settings: LocalStorageSettings | None = None
        self._name = ""
        self._root: _Root | None = None

    async def init(self, metadata: ComponentMetadata) -> None:
        settings = decode(LocalStorageSettings, metadata.properties)
        self._name = metadata.name
        path = await asyncio.to_thread(_prepare_root, settings.rootPath)
        self._root = _Root(path, metadata.name)
        self.settings = settings
        _log.info("output binding %r: local storage under %s", self._name, path)

    def operations(self) -> Sequence[str]:
        return _OPERATIONS

    async def close(self) -> None:
        self._root = None

    async def invoke(self, req: InvokeRequest) -> InvokeResponse:
        root = self._root
        if req.operation not in _OPERATIONS:
            raise UnsupportedOperationError(
                f"output binding {self._name!r} does not support operation {req.operation!r}"
            )
        if root is None:
            raise ComponentError(f"output binding {self._name!r} is not initialised or closed")
        name = req.metadata.get(_FIELD, "")
        if req.operation == "create":
            name = name or str(uuid.uuid4())
        elif not name and req.operation != "list":
            raise MetadataError(_FIELD, f"is required for operation {req.operation!r}")
        parts = file_parts(name)
        if req.operation != "list" and not parts:
            raise MetadataError(_FIELD, "must name a file under the root, not the root itself")
        try:
            return await asyncio.to_thread(_run, root, req.operation, parts, req.data)
        except OSError as exc:  # anything unforeseen; strerror only, never the host path
            raise ComponentError(
                f"output binding {self._name!r}: {req.operation} of {'/'.join(parts)!r} "
                f"failed: {exc.strerror}"
            ) from None


def _run(root: _Root, operation: str, parts: list[str], data: bytes) -> InvokeResponse:
    """One operation, start to finish, in a worker thread."""
    if operation == "create":
        root.write(parts, decode_payload(data))
        return InvokeResponse(data=json.dumps({"fileName": "/".join(parts)}).encode())
    if operation == "get":
        return InvokeResponse(data=root.read(parts))
    if operation == "list":
        # Dapr lists absolute paths; paths relative to rootPath say the same to the app
        # without revealing the sidecar's filesystem layout, and work as fileName as-is.
        return InvokeResponse(data=json.dumps(root.files(parts)).encode())
    root.remove(parts)
    return InvokeResponse()


def _prepare_root(root_path: str) -> str:
    """Create ``rootPath`` if missing; return its real path. Blocking."""
    try:
        os.makedirs(root_path, exist_ok=True)
    except OSError as exc:
        raise MetadataError("rootPath", f"cannot create directory {root_path!r}: {exc}") from exc
    real = os.path.realpath(root_path)
    if not os.path.isdir(real):
        raise MetadataError("rootPath", f"{root_path!r} is not a directory")
    return real
