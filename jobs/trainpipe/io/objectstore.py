"""Object storage (s3://, gs://, abfs://) through pyarrow.fs: the path type the loader walks, and stage publishing.

The loader (`data.loading`) takes a `Path` or an `ObjectPath` alike: `locate(text)` turns a data dir or
URI into one of them. A run whose output is on a store works in a local staging folder (`StagedOutput`):
after each finished stage, what changed is uploaded as complete objects, then the stage's completion
record (`<uri>/_complete/<stage>.json`) LAST; a resumed run, or the next stage's pod, starts from the
newest record and trusts only the objects it lists, checked by size and sha256. Object stores have no
rename, so the record, not a folder swap, is what makes a stage visible.

Credentials and endpoint come only from the environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
AWS_ENDPOINT_URL or TRAINPIPE_S3_ENDPOINT, AWS_REGION; the operator fills them from the spec's
credentials Secret). No message here quotes them: errors name the URI and what to do.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import lru_cache, partial
from pathlib import Path
from typing import TypeVar

import pyarrow.fs as pafs

from trainpipe.contract.exitcodes import CommandFailure, ExitCode
from trainpipe.contract.storage import ENDPOINT_ENV, REGION_ENV, is_object_uri
from trainpipe.io.atomic import atomic_path

_RECORD_SCHEMA = 1
_DEFAULT_REGION = "us-east-1"
T = TypeVar("T")


class ObjectStoreError(ValueError, CommandFailure):
    """The store refused or lacks what a URI names (no bucket, bad credentials, no such object); the message names the URI."""

    exit_code = ExitCode.BAD_DATA


# ---------------------------------------------------------------------------------------------
# The filesystem behind a URI


def _endpoint() -> str | None:
    # TRAINPIPE_S3_ENDPOINT first: a user's AWS_ENDPOINT_URL may point every AWS tool elsewhere.
    return os.environ.get("TRAINPIPE_S3_ENDPOINT") or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get(ENDPOINT_ENV) or None


def _s3_settings() -> tuple[str | None, str | None, str | None, str]:
    """(access key, secret key, endpoint, region) from the environment; the lru_cache key of `_s3`."""
    region = os.environ.get(REGION_ENV) or os.environ.get("AWS_DEFAULT_REGION") or _DEFAULT_REGION
    return os.environ.get("AWS_ACCESS_KEY_ID"), os.environ.get("AWS_SECRET_ACCESS_KEY"), _endpoint(), region


@lru_cache(maxsize=4)
def _s3(access_key: str | None, secret_key: str | None, endpoint: str | None, region: str) -> pafs.S3FileSystem:
    scheme, override = "https", None
    if endpoint:
        match = re.match(r"^(https?)://(.+?)/?$", endpoint)
        scheme, override = (match.group(1), match.group(2)) if match else ("https", endpoint)
    # Keys None: the AWS SDK's own chain (instance role, web identity) decides, as on any cloud node.
    return pafs.S3FileSystem(access_key=access_key, secret_key=secret_key, endpoint_override=override, scheme=scheme,
                             region=region, connect_timeout=10, request_timeout=60,
                             # The store is not ours to reshape: buckets are made by whoever owns them.
                             allow_bucket_creation=False, allow_bucket_deletion=False)


def filesystem(uri: str) -> tuple[pafs.FileSystem, str]:
    """The filesystem and the bucket-relative path (`bucket/prefix`) of an object-store URI."""
    if uri.startswith("s3://"):
        return _s3(*_s3_settings()), uri.removeprefix("s3://").rstrip("/")
    try:
        return pafs.FileSystem.from_uri(uri.rstrip("/"))
    except (OSError, ValueError) as exc:
        raise ObjectStoreError(f"{uri}: cannot open this object store ({_reason(exc)}); check the URI's scheme and the store's credentials") from None


# ---------------------------------------------------------------------------------------------
# A path on the store


@dataclass(frozen=True)
class ObjectPath:
    """An object or prefix on a store, with the few pathlib methods the loader uses (`/`, name, is_dir, iterdir…)."""

    scheme: str  # "s3"
    key: str  # bucket/prefix/name, no slashes at either end
    fs: pafs.FileSystem = field(compare=False)
    # The type a listing reported, so walking a listed prefix costs no request per entry; None: ask the store.
    kind: pafs.FileType | None = field(default=None, compare=False)

    @classmethod
    def parse(cls, uri: str) -> ObjectPath:
        fs, key = filesystem(uri)
        return cls(uri.split("://", 1)[0], key, fs)

    def __str__(self) -> str:
        return f"{self.scheme}://{self.key}"

    def __truediv__(self, name: str) -> ObjectPath:
        return ObjectPath(self.scheme, f"{self.key}/{name}", self.fs)

    def __lt__(self, other: ObjectPath) -> bool:
        return self.key < other.key

    @property
    def name(self) -> str:
        return self.key.rsplit("/", 1)[-1]

    @property
    def suffix(self) -> str:
        return Path(self.name).suffix

    @property
    def bucket(self) -> str:
        return self.key.split("/", 1)[0]

    def check_bucket(self) -> None:
        """ObjectStoreError naming the URI when its bucket does not exist (a missing key and a missing bucket look alike otherwise)."""
        if _call(str(self), lambda: self.fs.get_file_info(self.bucket)).type == pafs.FileType.NotFound:
            raise ObjectStoreError(f"{self}: the bucket '{self.bucket}' does not exist on this store; create it or fix the URI")

    def info(self) -> pafs.FileInfo:
        return _call(str(self), lambda: self.fs.get_file_info(self.key))

    def _kind(self) -> pafs.FileType:
        return self.kind if self.kind is not None else self.info().type

    def is_file(self) -> bool:
        return self._kind() == pafs.FileType.File

    def is_dir(self) -> bool:
        return self._kind() == pafs.FileType.Directory

    def iterdir(self) -> Iterator[ObjectPath]:
        selector = pafs.FileSelector(self.key, allow_not_found=True, recursive=False)
        for info in _call(str(self), lambda: self.fs.get_file_info(selector)):
            yield ObjectPath(self.scheme, info.path.rstrip("/"), self.fs, info.type)

    def glob(self, pattern: str) -> Iterator[ObjectPath]:
        return (p for p in self.iterdir() if fnmatch.fnmatch(p.name, pattern))

    def fingerprint(self) -> str:
        """`size:mtime_ns` of the object: what the stage cache keys it by.

        pyarrow's FileInfo carries no ETag or version id, so size plus last-modified stand in: an object
        rewritten with new content gets a new last-modified time, and nothing is read to digest it.
        """
        info = self.info()
        if info.type != pafs.FileType.File:
            raise ObjectStoreError(f"{self}: no such object; it was listed a moment ago: was it deleted during the run? Rerun once the data is complete")
        return f"{info.size}:{info.mtime_ns}"


Location = Path | ObjectPath


def locate(text: str | Path | ObjectPath) -> Location:
    """A data dir or file as given (a path, or an object-store URI) as the loader's path type."""
    if isinstance(text, ObjectPath):
        return text
    if is_object_uri(str(text)):
        return ObjectPath.parse(str(text))
    return Path(text)


def _reason(exc: BaseException) -> str:
    """What the store said, in one line, with anything that looks like a key stripped (belt and braces)."""
    text = " ".join(str(exc).split())
    for secret in (os.environ.get("AWS_SECRET_ACCESS_KEY"), os.environ.get("AWS_ACCESS_KEY_ID")):
        if secret:
            text = text.replace(secret, "***")
    return text[:300]


def explain(uri: str, exc: BaseException) -> str:
    """A store failure as `<uri>: <what>; <what to do>`, for the three failures users cause most."""
    raw = str(exc).upper()
    bucket = uri.split("://", 1)[-1].split("/", 1)[0]
    if "NO_SUCH_BUCKET" in raw or "NOSUCHBUCKET" in raw or "BUCKET DOES NOT EXIST" in raw:
        return f"{uri}: the bucket '{bucket}' does not exist on this store; create it or fix the URI"
    if any(code in raw for code in ("ACCESS_DENIED", "ACCESSDENIED", "INVALID_ACCESS_KEY", "INVALIDACCESSKEY",
                                    "SIGNATURE_DOES_NOT_MATCH", "SIGNATUREDOESNOTMATCH", "FORBIDDEN", "HTTP STATUS CODE: 403", "HTTP STATUS 403")):
        return (f"{uri}: access denied by the object store; check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY "
                f"(in a cluster: the storage.credentialsSecret Secret) and that they may read bucket '{bucket}'")
    if "NO_SUCH_KEY" in raw or "NOSUCHKEY" in raw or "PATH DOES NOT EXIST" in raw:
        return f"{uri}: no such object; was it deleted or moved? Rerun once the data is complete"
    endpoint = _endpoint() or "the provider's default endpoint"
    return f"{uri}: the object store failed ({_reason(exc)}); check that {endpoint} is reachable and the URI is right"


def _call(uri: str, fn: Callable[[], T]) -> T:
    try:
        return fn()
    except OSError as exc:
        raise ObjectStoreError(explain(uri, exc)) from None


# ---------------------------------------------------------------------------------------------
# Run outputs on a store: a local staging folder, published stage by stage with completion records


COMPLETE_PREFIX = "_complete"  # <uri>/_complete/<stage>.json: the completion records, one per finished stage


def _is_temp(rel: Path) -> bool:
    # What an atomic writer leaves mid-write (`.<name>.*.tmp`, `.<name>.old`): never an output.
    return any(part.startswith(".") and (part.endswith(".tmp") or part.endswith(".old")) for part in rel.parts)


def _snapshot(folder: Path) -> dict[str, dict]:
    """Every file under `folder` (temps aside) as name -> {size, sha256}."""
    files = {}
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder)
        if path.is_file() and not _is_temp(rel):
            data = path.read_bytes()
            files[rel.as_posix()] = {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    return files


def _write(fs: pafs.FileSystem, key: str, data: bytes) -> None:
    # One PUT (or multipart upload) per object: the object appears whole when the stream closes, or not at all.
    with fs.open_output_stream(key) as out:
        out.write(data)


def _read_object(store: ObjectPath, rel: str) -> bytes:
    uri = str(store / rel)
    with _call(uri, lambda: store.fs.open_input_stream(f"{store.key}/{rel}")) as stream:
        return _call(uri, stream.read)


@dataclass
class StagedOutput:
    """A run's output folder on a store, worked on in a local staging folder.

    `pull` makes the staging folder exactly the newest completed snapshot on the store (what a resumed run
    or the next stage's pod starts from); `push(stage)` uploads what changed as complete objects and then
    the stage's completion record, which lists every object of the snapshot with its size and sha256. A
    reader trusts only what a record lists, and checks each object against it.
    """

    remote: ObjectPath
    local: Path
    stages: tuple[str, ...]  # every stage that may publish, in run order (a record of a later one is newer)
    _published: dict[str, dict] | None = None

    def _record_key(self, stage: str) -> str:
        return f"{self.remote.key}/{COMPLETE_PREFIX}/{stage}.json"

    def latest(self) -> tuple[str, dict] | None:
        """(stage, record) of the last stage in run order that completed on the store; None when none did."""
        for stage in reversed(self.stages):
            key = self._record_key(stage)
            info = _call(str(self.remote), partial(self.remote.fs.get_file_info, key))
            if info.type == pafs.FileType.File:
                return stage, json.loads(_read_object(self.remote, f"{COMPLETE_PREFIX}/{stage}.json"))
        return None

    def _unit_records(self, after: str | None, keys_only: bool = False) -> list[tuple[str, dict]]:
        """(key, record) of every unit record of the stages after `after` (all when None), in stage order, then by name."""
        start = 0 if after is None else self.stages.index(after) + 1
        found: list[tuple[str, dict]] = []
        for stage in self.stages[start:]:
            selector = pafs.FileSelector(_unit_record_prefix(self.remote, stage), allow_not_found=True)
            infos = _call(str(self.remote), partial(self.remote.fs.get_file_info, selector))
            for info in sorted(infos, key=lambda i: i.path):
                if info.type == pafs.FileType.File and info.path.endswith(".json"):
                    rel = info.path[len(self.remote.key) + 1:]
                    found.append((info.path, {} if keys_only else json.loads(_read_object(self.remote, rel))))
        return found

    def push_unit(self, stage: str, unit: str) -> dict:
        """Publish what one unit of `stage` (its own pod) wrote: the changed objects, then
        `_complete/units/<stage>/<unit>.json` listing them. Units of one stage write disjoint files, so their
        records add up; the next stage's pull lays them over the newest stage snapshot."""
        if self._published is None:
            raise RuntimeError("StagedOutput.push_unit before pull: the staging folder must start from the store's snapshot")
        changed = {name: entry for name, entry in _snapshot(self.local).items() if self._published.get(name) != entry}
        for name in changed:
            data = (self.local / name).read_bytes()
            _call(str(self.remote / name), partial(_write, self.remote.fs, f"{self.remote.key}/{name}", data))
        record = {"schemaVersion": _RECORD_SCHEMA, "stage": stage, "unit": unit, "objects": changed}
        key = f"{_unit_record_prefix(self.remote, stage)}/{unit}.json"
        _call(str(self.remote), lambda: _write(self.remote.fs, key, json.dumps(record, indent=1, sort_keys=True).encode()))
        self._published.update(changed)
        return record

    def pull(self) -> str | None:
        """Bring the staging folder to the newest completed snapshot; returns its stage (None: nothing completed yet)."""
        self.local.mkdir(parents=True, exist_ok=True)
        # Checked before anything is downloaded: a missing bucket or bad credentials fail here, naming the URI.
        self.remote.check_bucket()
        found = self.latest()
        objects = dict(found[1]["objects"]) if found else {}
        # Units finished since (one select target, one training family in its own pod): their objects on top.
        for _, unit in self._unit_records(found[0] if found else None):
            objects.update(unit["objects"])
        here = _snapshot(self.local)
        for name in here.keys() - objects.keys():  # written here by a run that never published it: not trusted
            (self.local / name).unlink()
        for name, entry in objects.items():
            if here.get(name) == entry:
                continue
            data = _read_object(self.remote, name)
            if len(data) != entry["size"] or hashlib.sha256(data).hexdigest() != entry["sha256"]:
                raise ObjectStoreError(f"{self.remote / name}: differs from the completion record that lists it; "
                                       f"it was changed after its stage completed: rerun with --force")
            target = self.local / name
            target.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(target) as tmp:
                tmp.write_bytes(data)
        self._published = dict(objects)
        return found[0] if found else None

    def push(self, stage: str) -> dict:
        """Publish the staging folder as stage `stage`'s snapshot: later stages' records first go (they are stale),
        then every new or changed file is uploaded, then the record is written last. Returns the record."""
        if self._published is None:
            raise RuntimeError("StagedOutput.push before pull: the staging folder must start from the store's snapshot")
        for later in self.stages[self.stages.index(stage):]:
            key = self._record_key(later)
            _call(str(self.remote), partial(_delete_if_present, self.remote.fs, key))
        for key, _ in self._unit_records(stage, keys_only=True):
            _call(str(self.remote), partial(_delete_if_present, self.remote.fs, key))
        snapshot = _snapshot(self.local)
        for name, entry in snapshot.items():
            if self._published.get(name) != entry:
                data = (self.local / name).read_bytes()
                _call(str(self.remote / name), partial(_write, self.remote.fs, f"{self.remote.key}/{name}", data))
        record = {"schemaVersion": _RECORD_SCHEMA, "stage": stage, "objects": snapshot}
        body = json.dumps(record, indent=1, sort_keys=True).encode()
        _call(str(self.remote), lambda: _write(self.remote.fs, self._record_key(stage), body))
        self._published = dict(snapshot)
        return record


def _unit_record_prefix(remote: ObjectPath, stage: str) -> str:
    return f"{remote.key}/{COMPLETE_PREFIX}/units/{stage}"


def _delete_if_present(fs: pafs.FileSystem, key: str) -> None:
    if fs.get_file_info(key).type == pafs.FileType.File:
        fs.delete_file(key)


def staging_folder(uri: str) -> Path:
    """The local folder a run on `uri` works in: one per URI, under TRAINPIPE_STAGING_DIR (default: the user's cache)."""
    root = os.environ.get("TRAINPIPE_STAGING_DIR") or os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "trainpipe", "staging")
    return Path(root) / hashlib.sha256(uri.rstrip("/").encode()).hexdigest()[:16]
