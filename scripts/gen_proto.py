"""Generate the Python protobuf and gRPC modules from ``proto/``.

This is the one place generated code comes from: it sits between the
hand-written ``.proto`` files under ``proto/`` and the two committed copies of
their Python modules, ``daprlite/_proto/`` (used by the sidecar) and
``clients/python/daprlite_client/_proto/`` (shipped with the thin client).

Usage::

    python scripts/gen_proto.py          # regenerate both targets in place
    python scripts/gen_proto.py --check  # exit 1 if the committed files are stale

The raw ``grpc_tools.protoc`` output is post-processed so that:

* imports between our own modules point at the target's package root
  (``daprlite._proto.dapr.proto...``). Left alone they would say
  ``from dapr.proto...`` and silently load the official ``dapr`` SDK's modules.
* descriptors go into a private pool (``<root>/_pool.py``) instead of the
  default one. The ``dapr`` SDK registers the same full names in the default
  pool, and a process importing both would fail with duplicate-symbol errors.

The output depends only on the ``.proto`` files and the grpcio-tools version,
so two runs give identical bytes and ``--check`` can guard it in CI.
"""

from __future__ import annotations

import argparse
import difflib
import importlib.metadata
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from google.protobuf import descriptor_pb2

REPO = Path(__file__).resolve().parent.parent
PROTO_ROOT = REPO / "proto"

# Generated files are identified by name so stale ones can be removed and
# anything else a developer keeps in a target folder is left untouched.
GENERATED_SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py")
GENERATED_NAMES = ("__init__.py", "_pool.py")

# `from a.b import c_pb2` / `c_pb2_grpc`, as protoc writes imports of generated modules.
FOREIGN_PB2_IMPORT = re.compile(r"^\s*from ([\w.]+) import (\w+_pb2(?:_grpc)?)\b", re.M)

# Cap the diff shown by --check so CI logs stay readable.
DIFF_LINES_PER_FILE = 20
DIFF_LINES_TOTAL = 200


@dataclass(frozen=True, slots=True)
class Target:
    """One committed copy of the generated modules."""

    directory: Path  # where the files live, relative to REPO
    package: str  # the import path of that directory

    @property
    def path(self) -> Path:
        return REPO / self.directory


TARGETS = (
    Target(Path("daprlite/_proto"), "daprlite._proto"),
    Target(Path("clients/python/daprlite_client/_proto"), "daprlite_client._proto"),
)


@dataclass(frozen=True, slots=True)
class RawOutput:
    """What protoc produced: module files by relative path, plus the import graph."""

    files: dict[str, bytes]
    # Our own proto modules as dotted paths, e.g. "dapr.proto.common.v1.common_pb2".
    own_modules: tuple[str, ...]
    # Well-known-type files our protos need, e.g. "google/protobuf/any.proto".
    well_known_files: tuple[str, ...]


def find_proto_files() -> list[str]:
    """Every .proto under proto/, as paths relative to it, in a stable order."""
    files = sorted(p.relative_to(PROTO_ROOT).as_posix() for p in PROTO_ROOT.rglob("*.proto"))
    if not files:
        raise SystemExit(f"gen_proto: no .proto files found under {PROTO_ROOT}")
    return files


def run_protoc(proto_files: list[str], out_dir: Path) -> RawOutput:
    """Run grpc_tools.protoc once and read back everything it wrote."""
    descriptor_set = out_dir / "descriptors.pb"
    code_dir = out_dir / "code"
    code_dir.mkdir()
    # `python -m grpc_tools.protoc` adds the bundled well-known-type include path
    # itself. Input names are relative to proto/ so no absolute path of this
    # machine can end up in the generated `source:` lines.
    command = [
        sys.executable,
        "-m",
        "grpc_tools.protoc",
        f"--proto_path={PROTO_ROOT}",
        f"--python_out={code_dir}",
        f"--pyi_out={code_dir}",
        f"--grpc_python_out={code_dir}",
        f"--descriptor_set_out={descriptor_set}",
        "--include_imports",
        *proto_files,
    ]
    result = subprocess.run(command, cwd=PROTO_ROOT, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"gen_proto: protoc failed (exit {result.returncode}):\n{result.stderr}")

    files = {
        p.relative_to(code_dir).as_posix(): p.read_bytes()
        for p in sorted(code_dir.rglob("*"))
        if p.is_file()
    }
    file_set = descriptor_pb2.FileDescriptorSet.FromString(descriptor_set.read_bytes())
    well_known = sorted(f.name for f in file_set.file if f.name.startswith("google/protobuf/"))
    own = tuple(proto_module(name) for name in proto_files)
    return RawOutput(files, own, tuple(well_known))


def proto_module(proto_file: str) -> str:
    """`dapr/proto/common/v1/common.proto` -> `dapr.proto.common.v1.common_pb2`."""
    return proto_file.removesuffix(".proto").replace("/", ".") + "_pb2"


def replace_once(text: str, old: str, new: str, where: str) -> str:
    """Replace `old`, insisting that it occurs exactly once.

    If a future protoc changes its output shape, failing here is far better
    than shipping modules that quietly use the default pool again.
    """
    found = text.count(old)
    if found != 1:
        raise SystemExit(
            f"gen_proto: expected {old!r} once in {where}, found it {found} times; "
            "the protoc output format changed, update scripts/gen_proto.py"
        )
    return text.replace(old, new)


def header(package: str) -> str:
    return (
        f"# Post-processed by scripts/gen_proto.py for package root {package}\n"
        "# (own imports rooted there, private descriptor pool). Edit proto/ and rerun.\n"
    )


def add_header(text: str, package: str) -> str:
    # A coding cookie must stay on the first or second line, so keep it first.
    first, _, rest = text.partition("\n")
    if first.startswith("# -*- coding"):
        return f"{first}\n{header(package)}{rest}"
    return header(package) + text


def root_imports(text: str, raw: RawOutput, package: str) -> str:
    """Point `from dapr.proto.x import y_pb2` at `<package>.dapr.proto.x`."""
    for module in raw.own_modules:
        parent, _, name = module.rpartition(".")
        for suffix in ("", "_grpc"):
            pattern = re.compile(
                rf"^(\s*)from {re.escape(parent)} import {re.escape(name + suffix)}\b", re.M
            )
            text = pattern.sub(rf"\1from {package}.{parent} import {name}{suffix}", text)
    return text


def check_imports(text: str, where: str, package: str) -> None:
    """Fail if a generated module still imports a generated module from outside `package`.

    Such an import would load the official SDK's module of the same name (or
    nothing at all), which is exactly what the rewrite is there to prevent.
    """
    for match in FOREIGN_PB2_IMPORT.finditer(text):
        if not match.group(1).startswith((f"{package}.", "google.protobuf")):
            raise SystemExit(
                f"gen_proto: {where} imports {match.group(1)}.{match.group(2)}, which is not "
                f"under {package}; is a .proto imported from outside proto/?"
            )


def rewrite_pb2(text: str, relpath: str, raw: RawOutput, package: str) -> str:
    module = relpath.removesuffix(".py").replace("/", ".")
    text = replace_once(
        text,
        "from google.protobuf.internal import builder as _builder\n",
        "from google.protobuf.internal import builder as _builder\n"
        f"from {package}._pool import POOL as _POOL\n",
        relpath,
    )
    text = replace_once(
        text,
        "DESCRIPTOR = _descriptor_pool.Default().AddSerializedFile(",
        "DESCRIPTOR = _POOL.AddSerializedFile(",
        relpath,
    )
    # The builder stamps this name into each class's __module__; make it the
    # real import path so repr, pickling and introspection point at our module.
    text = replace_once(
        text,
        f"_builder.BuildTopDescriptorsAndMessages(DESCRIPTOR, '{module}', _globals)",
        f"_builder.BuildTopDescriptorsAndMessages(DESCRIPTOR, '{package}.{module}', _globals)",
        relpath,
    )
    return root_imports(text, raw, package)


def pool_module(raw: RawOutput, package: str) -> str:
    # "google/protobuf/any.proto" -> module "any_pb2" of package google.protobuf.
    modules = sorted(Path(name).stem + "_pb2" for name in raw.well_known_files)
    imports = "\n".join(f"from google.protobuf import {module}" for module in modules)
    names = ", ".join(modules)
    return f'''"""Private descriptor pool for the generated modules under ``{package}``.

Every ``*_pb2`` module in this package registers its descriptors here rather
than in protobuf's default pool. The official ``dapr`` SDK registers the same
full names (``dapr.proto.runtime.v1.GetStateRequest`` ...) in the default pool,
and both must be importable in one process. Messages stay wire-identical; only
the Python descriptor objects are separate, so assign well-known types such as
``google.protobuf.Any`` field by field (or with ``Pack``) instead of
``CopyFrom`` of a default-pool instance.

Generated by scripts/gen_proto.py; do not edit.
"""

from __future__ import annotations

from google.protobuf import descriptor as _descriptor
from google.protobuf import descriptor_pb2 as _descriptor_pb2
from google.protobuf import descriptor_pool as _descriptor_pool
{imports}

POOL = _descriptor_pool.DescriptorPool()


def _add(file: _descriptor.FileDescriptor) -> None:
    # A file can only be added after its dependencies.
    for dependency in file.dependencies:
        _add(dependency)
    try:
        POOL.FindFileByName(file.name)
    except KeyError:
        proto = _descriptor_pb2.FileDescriptorProto()
        file.CopyToProto(proto)
        POOL.AddSerializedFile(proto.SerializeToString())


# The well-known types our .proto files import, copied from the default pool.
for _module in [{names}]:
    _add(_module.DESCRIPTOR)
'''


def init_files(raw: RawOutput, package: str) -> dict[str, str]:
    """An __init__.py for the root and for every folder holding generated code."""
    root_doc = (
        f'"""Generated protobuf and gRPC modules for ``proto/`` (package root ``{package}``).\n'
        "\n"
        "Generated by scripts/gen_proto.py; do not edit. Modules register their\n"
        "descriptors in the private pool of ``_pool`` so they can live next to the\n"
        "official ``dapr`` SDK in one process.\n"
        '"""\n'
    )
    inits = {"__init__.py": root_doc}
    for relpath in raw.files:
        parts = relpath.split("/")[:-1]
        for depth in range(1, len(parts) + 1):
            inits.setdefault("/".join([*parts[:depth], "__init__.py"]), f"{header(package)}")
    return inits


def render(raw: RawOutput, target: Target) -> dict[str, bytes]:
    """The complete file set of one target, keyed by path relative to it."""
    out: dict[str, str] = {}
    for relpath, data in raw.files.items():
        text = data.decode("utf-8")
        if relpath.endswith("_pb2.py"):
            text = rewrite_pb2(text, relpath, raw, target.package)
        else:
            text = root_imports(text, raw, target.package)
        check_imports(text, (target.directory / relpath).as_posix(), target.package)
        out[relpath] = add_header(text, target.package)
    out["_pool.py"] = pool_module(raw, target.package)
    out.update(init_files(raw, target.package))

    rendered = {path: out[path].encode("utf-8") for path in sorted(out)}
    for path, data in rendered.items():
        if str(REPO).encode() in data or str(PROTO_ROOT).encode() in data:
            raise SystemExit(
                f"gen_proto: {target.directory / path} contains a path of this machine"
            )
    return rendered


def is_generated(path: Path) -> bool:
    return path.name in GENERATED_NAMES or path.name.endswith(GENERATED_SUFFIXES)


def committed(target: Target) -> dict[str, bytes]:
    if not target.path.is_dir():
        return {}
    return {
        p.relative_to(target.path).as_posix(): p.read_bytes()
        for p in sorted(target.path.rglob("*"))
        if p.is_file() and "__pycache__" not in p.parts and is_generated(p)
    }


def write(target: Target, files: dict[str, bytes]) -> int:
    """Make the target hold exactly `files`; return how many paths changed."""
    changed = 0
    current = committed(target)
    for relpath in sorted(set(current) - set(files)):
        (target.path / relpath).unlink()
        changed += 1
    for relpath, data in files.items():
        if current.get(relpath) == data:
            continue
        dest = target.path / relpath
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(data)
        changed += 1
    # Drop folders left empty by removed protos, deepest first.
    for folder in sorted(target.path.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
    return changed


def differences(target: Target, files: dict[str, bytes]) -> list[str]:
    """Human-readable lines describing how the committed target is stale."""
    current = committed(target)
    lines: list[str] = []
    for relpath in sorted(set(current) | set(files)):
        shown = (target.directory / relpath).as_posix()
        if relpath not in files:
            lines.append(f"  stale file (no longer generated): {shown}")
        elif relpath not in current:
            lines.append(f"  missing file: {shown}")
        elif current[relpath] != files[relpath]:
            lines.append(f"  differs: {shown}")
            diff = difflib.unified_diff(
                current[relpath].decode("utf-8", "replace").splitlines(),
                files[relpath].decode("utf-8", "replace").splitlines(),
                "committed",
                "regenerated",
                lineterm="",
                n=0,
            )
            excerpt = list(diff)[2 : 2 + DIFF_LINES_PER_FILE]
            lines.extend(f"      {line[:160]}" for line in excerpt)
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Generate Python modules from proto/.")
    parser.add_argument(
        "--check",
        action="store_true",
        help="regenerate into a temporary folder and fail if the committed output differs",
    )
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="daprlite-gen-proto-") as tmp:
        raw = run_protoc(find_proto_files(), Path(tmp))
    rendered = {target: render(raw, target) for target in TARGETS}

    if args.check:
        report = [line for t in TARGETS for line in differences(t, rendered[t])]
        if report:
            tools = importlib.metadata.version("grpcio-tools")
            print("gen_proto: generated code is out of date:", file=sys.stderr)
            shown = report[:DIFF_LINES_TOTAL]
            if len(report) > len(shown):
                shown.append(f"  ... {len(report) - len(shown)} more lines")
            print("\n".join(shown), file=sys.stderr)
            print(
                f"Run `python scripts/gen_proto.py` (this check used grpcio-tools {tools}; "
                "a different version also changes the output).",
                file=sys.stderr,
            )
            return 1
        print("gen_proto: generated code is up to date")
        return 0

    for target in TARGETS:
        changed = write(target, rendered[target])
        print(f"gen_proto: {target.directory}: {len(rendered[target])} files, {changed} changed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
