"""Who a pipeline folder on the artifacts volume belongs to: the `--owner` argument the operator passes every stage, and the record it leaves.

The operator writes the argument (`manifests.stage_args`); the stage commands parse it and keep it as
`<pipeline folder>/.trainpipe/owner.json` (`runner.ownership`). A pipeline's UID tells apart two
pipelines of one name: one in another namespace, or one deleted and created again.
"""

from __future__ import annotations

from pydantic import Field

from trainpipe.contract.base import Contract

SEPARATOR = "/"  # namespaces, names (DNS labels and subdomains) and UIDs never hold one


class FolderOwner(Contract):
    """The pipeline a folder belongs to, as its owner record holds it."""

    namespace: str = Field(min_length=1)
    name: str = Field(min_length=1)
    uid: str = Field(min_length=1)

    def to_arg(self) -> str:
        return SEPARATOR.join((self.namespace, self.name, self.uid))

    def describe(self) -> str:
        return f"pipeline {self.namespace}/{self.name} (uid {self.uid})"

    @classmethod
    def from_arg(cls, text: str) -> FolderOwner:
        """`<namespace>/<name>/<uid>`; ValueError naming what is wrong."""
        parts = text.split(SEPARATOR)
        if len(parts) != 3 or not all(parts):
            raise ValueError(f"{text!r} is not an owner: give <namespace>/<pipeline>/<uid>, e.g. ml/demo/6f1c…")
        return cls(namespace=parts[0], name=parts[1], uid=parts[2])
