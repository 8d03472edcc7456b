"""``bindings.localstorage`` on a real directory, including the path attacks it must refuse.

Every test gets a fresh root under pytest's tmp_path and, beside it, an
``outside`` directory holding a secret: the attack tests check both that the
request is refused with a MetadataError naming ``fileName`` (a 4xx for the
caller) and that nothing outside the root was read, written or deleted.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from daprlite.components.bindings.api import (
    InvokeRequest,
    InvokeResponse,
    OutputBinding,
    UnsupportedOperationError,
)
from daprlite.components.bindings.localstorage import LocalStorageBinding
from daprlite.components.errors import ComponentError, MetadataError
from daprlite.components.metadata import ComponentMetadata
from daprlite.components.registry import Registry

SECRET = b"outside secret"


@dataclass
class Storage:
    binding: LocalStorageBinding
    root: Path
    outside: Path

    async def run(self, operation: str, data: bytes = b"", **metadata: str) -> InvokeResponse:
        return await self.binding.invoke(InvokeRequest(operation, data, metadata))

    async def create(self, name: str, data: bytes) -> str:
        resp = await self.run("create", data, fileName=name)
        return str(json.loads(resp.data or b"")["fileName"])

    async def get(self, name: str) -> bytes:
        return (await self.run("get", fileName=name)).data or b""

    async def list(self, name: str | None = None) -> list[str]:
        resp = await self.run("list", **({} if name is None else {"fileName": name}))
        return list(json.loads(resp.data or b""))

    def outside_snapshot(self) -> dict[str, bytes]:
        return {
            str(p.relative_to(self.outside)): p.read_bytes()
            for p in sorted(self.outside.rglob("*"))
            if p.is_file()
        }


@pytest.fixture
async def storage(tmp_path: Path) -> AsyncIterator[Storage]:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_bytes(SECRET)
    root = tmp_path / "root" / "files"  # does not exist yet: init creates it
    binding = LocalStorageBinding()
    await binding.init(
        ComponentMetadata(
            name="files", type="bindings.localstorage", properties={"rootPath": str(root)}
        )
    )
    try:
        yield Storage(binding, root, outside)
    finally:
        await binding.close()


# -- the contract --------------------------------------------------------------------------
async def test_root_path_is_created_when_missing(storage: Storage):
    assert storage.root.is_dir()
    assert await storage.list() == []


async def test_create_get_list_delete_round_trip(storage: Storage):
    assert await storage.create("report.txt", b"hello") == "report.txt"
    assert (storage.root / "report.txt").read_bytes() == b"hello"
    assert await storage.get("report.txt") == b"hello"
    assert await storage.list() == ["report.txt"]
    resp = await storage.run("delete", fileName="report.txt")
    assert resp.data is None
    assert not (storage.root / "report.txt").exists()
    assert await storage.list() == []


async def test_create_overwrites_and_leaves_no_temporary_files(storage: Storage):
    await storage.create("a.txt", b"first version")
    await storage.create("a.txt", b"second")
    assert await storage.get("a.txt") == b"second"
    assert sorted(os.listdir(storage.root)) == ["a.txt"]


async def test_create_without_file_name_picks_a_uuid(storage: Storage):
    resp = await storage.run("create", b"some data!")
    name = json.loads(resp.data or b"")["fileName"]
    assert len(name) == 36 and name.count("-") == 4
    assert (storage.root / name).read_bytes() == b"some data!"


async def test_create_in_sub_directories_and_list_them_recursively(storage: Storage):
    assert await storage.create("2024//01/./a.txt", b"a!") == "2024/01/a.txt"
    await storage.create("2024/02/b.txt", b"b")
    await storage.create("top.txt", b"t")
    assert await storage.list() == ["2024/01/a.txt", "2024/02/b.txt", "top.txt"]
    # Paths are relative to rootPath: usable as fileName, and they reveal nothing of the host.
    assert await storage.list("2024") == ["2024/01/a.txt", "2024/02/b.txt"]
    assert await storage.get("2024/01/a.txt") == b"a!"
    assert str(storage.root) not in json.dumps(await storage.list())


@pytest.mark.parametrize(
    ("sent", "stored"),
    [
        (b'"aGVsbG8gd29ybGQ="', b"hello world"),  # HTTP callers' JSON string of base64
        (b"aGVsbG8gd29ybGQ=", b"hello world"),  # raw base64 (gRPC callers)
        (b'"plain text, not base64!"', b"plain text, not base64!"),  # JSON string unquoted
        (b'{"order": 1}', b'{"order": 1}'),  # JSON object kept as is
        (b"\x00\xff\x10 binary", b"\x00\xff\x10 binary"),
        (b'"unterminated', b'"unterminated'),
        (b"test", b"\xb5\xeb-"),  # Dapr's quirk: any text that is valid base64 is decoded
    ],
)
async def test_create_unquotes_json_strings_then_decodes_base64_as_dapr_does(
    storage: Storage, sent: bytes, stored: bytes
):
    await storage.create("payload", sent)
    assert (storage.root / "payload").read_bytes() == stored


async def test_binary_round_trip_through_base64(storage: Storage):
    blob = bytes(range(256)) * 4
    await storage.create("blob.bin", json.dumps(base64.b64encode(blob).decode()).encode())
    assert await storage.get("blob.bin") == blob


async def test_get_of_a_missing_file_says_file_not_found_without_host_paths(storage: Storage):
    with pytest.raises(ComponentError, match="file not found") as info:
        await storage.get("nope.txt")
    assert not isinstance(info.value, MetadataError)
    assert str(storage.root) not in str(info.value)


async def test_delete_of_a_missing_file_fails(storage: Storage):
    with pytest.raises(ComponentError, match="file not found"):
        await storage.run("delete", fileName="nope.txt")


async def test_list_of_a_missing_directory_fails(storage: Storage):
    with pytest.raises(ComponentError, match="directory not found"):
        await storage.list("missing")


@pytest.mark.parametrize("operation", ["get", "delete"])
async def test_get_and_delete_require_a_file_name(storage: Storage, operation: str):
    with pytest.raises(MetadataError) as info:
        await storage.run(operation)
    assert info.value.field == "fileName"


@pytest.mark.parametrize("operation", ["create", "get", "delete"])
async def test_the_root_itself_is_not_a_file_name(storage: Storage, operation: str):
    with pytest.raises(MetadataError) as info:
        await storage.run(operation, b"x", fileName="./")
    assert info.value.field == "fileName"
    assert storage.root.is_dir()


async def test_directories_cannot_be_read_or_overwritten(storage: Storage):
    await storage.create("dir/file.txt", b"x")
    with pytest.raises(ComponentError, match="not a regular file"):
        await storage.get("dir")
    with pytest.raises(ComponentError, match="directory"):
        await storage.create("dir", b"y")
    assert await storage.get("dir/file.txt") == b"x"


async def test_delete_removes_empty_directories_only(storage: Storage):
    await storage.create("dir/file.txt", b"x")
    with pytest.raises(ComponentError):
        await storage.run("delete", fileName="dir")
    await storage.run("delete", fileName="dir/file.txt")
    await storage.run("delete", fileName="dir")
    assert not (storage.root / "dir").exists()


@pytest.mark.parametrize("name", ["x" * 300, "d" * 300 + "/f.txt"])
@pytest.mark.parametrize("operation", ["create", "get"])
async def test_over_long_names_are_refused_naming_file_name(
    storage: Storage, operation: str, name: str
):
    with pytest.raises(MetadataError) as info:
        await storage.run(operation, b"x", fileName=name)
    assert info.value.field == "fileName"
    assert str(storage.root) not in str(info.value)


async def test_unknown_operation_is_unsupported(storage: Storage):
    assert isinstance(storage.binding, OutputBinding)
    assert set(storage.binding.operations()) == {"create", "get", "list", "delete"}
    with pytest.raises(UnsupportedOperationError):
        await storage.run("append", b"x", fileName="a")


# -- path attacks ----------------------------------------------------------------------------
ESCAPES = [
    "../x",
    "../outside/secret.txt",
    "a/../../x",
    "a/../b",  # harmless in the end, but '..' is refused outright rather than clamped
    "..",
    "{outside}/secret.txt",  # absolute paths (into a folder of ours: a bug must not
    "{outside}/new.txt",  # clobber a real system file)
    "x\x00y",
    "secret.txt\x00.png",
]


@pytest.mark.parametrize("name", ESCAPES)
@pytest.mark.parametrize("operation", ["create", "get", "list", "delete"])
async def test_names_that_escape_the_root_are_refused(storage: Storage, operation: str, name: str):
    before = storage.outside_snapshot()
    with pytest.raises(MetadataError) as info:
        await storage.run(operation, b"pwned", fileName=name.format(outside=storage.outside))
    assert info.value.field == "fileName"
    assert storage.outside_snapshot() == before
    assert not (storage.root.parent / "x").exists()
    assert await storage.list() == []


@pytest.mark.parametrize("operation", ["get", "list"])
async def test_absolute_system_paths_are_refused(storage: Storage, operation: str):
    with pytest.raises(MetadataError) as info:
        await storage.run(operation, fileName="/etc/passwd")
    assert info.value.field == "fileName"


@pytest.mark.parametrize("name", ["..%2fx", "..%2F..%2Fx", "..\\x", "...", "..x", "x..", ".hidden"])
async def test_odd_looking_names_are_plain_names_inside_the_root(storage: Storage, name: str):
    before = storage.outside_snapshot()
    assert await storage.create(name, b"inside") == name
    assert (storage.root / name).read_bytes() == b"inside"
    assert await storage.get(name) == b"inside"
    assert await storage.list() == [name]
    assert storage.outside_snapshot() == before
    assert sorted(os.listdir(storage.root.parent)) == ["files"]


@pytest.fixture
def links(storage: Storage) -> Storage:
    """Links inside the root: to the outside directory, the outside file, and an inside file."""
    (storage.root / "dir_link").symlink_to(storage.outside, target_is_directory=True)
    (storage.root / "file_link").symlink_to(storage.outside / "secret.txt")
    (storage.root / "real.txt").write_bytes(b"real")
    (storage.root / "inner_link").symlink_to(storage.root / "real.txt")
    (storage.root / "dangling").symlink_to(storage.outside / "not-yet.txt")
    return storage


LINK_NAMES = ["file_link", "dir_link/secret.txt", "inner_link", "dangling"]


@pytest.mark.parametrize("name", LINK_NAMES)
async def test_get_through_a_symlink_is_refused(links: Storage, name: str):
    with pytest.raises(MetadataError) as info:
        await links.get(name)
    assert info.value.field == "fileName"


@pytest.mark.parametrize("name", [*LINK_NAMES, "dir_link/new.txt", "dir_link/sub/new.txt"])
async def test_create_through_a_symlink_is_refused_and_writes_nothing(links: Storage, name: str):
    before = links.outside_snapshot()
    with pytest.raises(MetadataError) as info:
        await links.create(name, b"pwned")
    assert info.value.field == "fileName"
    assert links.outside_snapshot() == before
    assert (links.root / "real.txt").read_bytes() == b"real"
    assert (links.root / name.split("/")[0]).is_symlink()  # the link was not replaced


@pytest.mark.parametrize("name", LINK_NAMES)
async def test_delete_through_a_symlink_is_refused_and_removes_nothing(links: Storage, name: str):
    before = links.outside_snapshot()
    with pytest.raises(MetadataError) as info:
        await links.run("delete", fileName=name)
    assert info.value.field == "fileName"
    assert links.outside_snapshot() == before
    assert (links.root / name.split("/")[0]).is_symlink()


@pytest.mark.parametrize("name", ["dir_link", "file_link", "inner_link"])
async def test_list_of_a_symlink_is_refused(links: Storage, name: str):
    with pytest.raises(MetadataError) as info:
        await links.list(name)
    assert info.value.field == "fileName"


async def test_list_of_the_root_skips_links_and_never_descends_into_them(links: Storage):
    assert await links.list() == ["real.txt"]


async def test_symlinked_directory_deeper_in_the_tree_is_refused(storage: Storage):
    await storage.create("a/b/ok.txt", b"ok")
    (storage.root / "a" / "b" / "escape").symlink_to(storage.outside, target_is_directory=True)
    before = storage.outside_snapshot()
    for op in ("create", "get", "delete"):
        with pytest.raises(MetadataError):
            await storage.run(op, b"pwned", fileName="a/b/escape/secret.txt")
    with pytest.raises(MetadataError):
        await storage.list("a/b/escape")
    assert storage.outside_snapshot() == before
    assert await storage.list("a") == ["a/b/ok.txt"]


async def test_a_fifo_in_the_root_is_refused_without_hanging(storage: Storage):
    os.mkfifo(storage.root / "pipe")
    with pytest.raises(ComponentError, match="not a regular file"):
        await storage.get("pipe")


# -- component metadata ------------------------------------------------------------------------
async def test_root_path_is_required():
    with pytest.raises(MetadataError) as info:
        await LocalStorageBinding().init(
            ComponentMetadata(name="files", type="bindings.localstorage")
        )
    assert info.value.field == "rootPath"


async def test_root_path_that_is_a_file_is_refused(tmp_path: Path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(MetadataError) as info:
        await LocalStorageBinding().init(
            ComponentMetadata(
                name="files",
                type="bindings.localstorage",
                properties={"rootPath": str(tmp_path / "file")},
            )
        )
    assert info.value.field == "rootPath"


async def test_root_path_may_itself_be_a_symlink(tmp_path: Path):
    (tmp_path / "real").mkdir()
    (tmp_path / "alias").symlink_to(tmp_path / "real", target_is_directory=True)
    binding = LocalStorageBinding()
    await binding.init(
        ComponentMetadata(
            name="files",
            type="bindings.localstorage",
            properties={"rootPath": str(tmp_path / "alias")},
        )
    )
    try:
        await binding.invoke(InvokeRequest("create", b"ok", {"fileName": "f.txt"}))
    finally:
        await binding.close()
    assert (tmp_path / "real" / "f.txt").read_bytes() == b"ok"


def test_registry_resolves_bindings_localstorage():
    assert Registry().resolve("bindings.localstorage") is LocalStorageBinding
