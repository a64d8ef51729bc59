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
