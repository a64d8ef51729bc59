"""Object storage in the spec: `data.uri`, `artifacts.uri` and the `storage` section that says how to reach them.

Read by the runner (where the bars and the outputs live) and by the operator (no claim for an object-store
URI; the credentials Secret becomes the pods' AWS_* environment). Credentials themselves never appear in
a spec: only the name of the Secret that holds them.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from trainpipe.contract import sizes
from trainpipe.contract.base import Contract

# The schemes pyarrow.fs opens through one filesystem layer; only s3 is tested against a real server.
OBJECT_SCHEMES: tuple[str, ...] = ("s3", "gs", "abfs")
# scheme://bucket[/prefix]: a bucket is required, a trailing slash is fine.
ObjectUri = Annotated[str, Field(min_length=6, max_length=sizes.PATH, pattern=r"^(s3|gs|abfs)://[A-Za-z0-9][A-Za-z0-9._-]*(/.*)?$")]
# A Secret's name (DNS subdomain); own copy of cluster.py's rule, as cluster.py imports ObjectUri from here.
SecretName = Annotated[str, Field(min_length=1, max_length=253, pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")]
# The keys the credentials Secret must hold; the pods get them as environment variables of the same names.
SECRET_KEYS: tuple[str, ...] = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
# Where an endpoint given in the spec reaches the jobs (a value, not a secret), and the region.
ENDPOINT_ENV = "AWS_ENDPOINT_URL"
REGION_ENV = "AWS_REGION"


def is_object_uri(text: str | None) -> bool:
    """True for `s3://…`, `gs://…`, `abfs://…` (a URI the object-store layer reads), False for a local path."""
    return bool(text) and any(str(text).startswith(f"{scheme}://") for scheme in OBJECT_SCHEMES)


class StorageSpec(Contract):
    """How the jobs reach the object store that data.uri / artifacts.uri name (cluster runs; `trainpipe run` reads the AWS_* environment)."""

    credentials_secret: SecretName | None = Field(
        None, description="Secret in the pipeline's namespace with keys AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, given to every Job's pods as "
                          "environment variables. Empty: the pods use the cloud's own identity (workload identity, instance role).")
    endpoint: Annotated[str, Field(max_length=sizes.PATH, pattern=r"^https?://[^\s/]+/?$")] | None = Field(
        None, description="S3 endpoint URL for an S3-compatible store (SeaweedFS, Ceph, MinIO), e.g. http://s3.storage:8333; empty = AWS.")
    region: Annotated[str, Field(max_length=64, pattern=r"^[a-z0-9-]+$")] | None = Field(None, description="Region of the bucket (AWS_REGION); empty = us-east-1.")
