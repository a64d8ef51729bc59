"""The pydantic base every contract model uses: camelCase on the wire, snake_case in Python, no unknown keys."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel


class Contract(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
        use_enum_values=False,
    )

    def to_wire(self) -> dict:
        """JSON-ready dict with camelCase keys, as written to files, ConfigMaps and the CRD."""
        return self.model_dump(mode="json", by_alias=True)

    def to_snake(self) -> dict:
        """JSON-ready dict with the Python field names (snake_case) at every depth: the spelling of the plan files,
        whose readers predate Kubernetes. `model_validate` accepts either spelling (`populate_by_name`)."""
        return self.model_dump(mode="json", by_alias=False)


class SnakeContract(Contract):
    """A contract whose own keys stay snake_case on disk: stage artefacts whose readers (the report, users'
    scripts, earlier runs' files) already use that spelling. Nested `Contract` models keep their camelCase."""

    model_config = Contract.model_config | {"alias_generator": None}
