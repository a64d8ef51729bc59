"""The pydantic base every contract model uses: camelCase on the wire, snake_case in Python, no unknown keys."""

from __future__ import annotations

from typing import ClassVar

from pydantic import BaseModel, ConfigDict, model_validator
from pydantic.alias_generators import to_camel


class Contract(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
        use_enum_values=False,
    )
    # A versioned file's kind ("rankings", "routing plan"): set, it makes the model refuse a `schema_version`
    # other than its field's default, with `SCHEMA_FIX` (what to run) appended to the error.
    SCHEMA_NAME: ClassVar[str] = ""
    SCHEMA_FIX: ClassVar[str] = ""

    @model_validator(mode="after")
    def _schema_version(self) -> Contract:
        if self.SCHEMA_NAME:
            expected = type(self).model_fields["schema_version"].default
            found = getattr(self, "schema_version", None)
            if found != expected:
                fix = f"; {self.SCHEMA_FIX}" if self.SCHEMA_FIX else ""
                raise ValueError(f"{self.SCHEMA_NAME} schema {found!r} is not {expected!r}{fix}")
        return self

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
