"""The base of every config model: unknown keys are errors (and the error lists the valid ones); a number field
refuses inf and nan (YAML's `.inf`, `.nan`): every numeric setting needs a finite value."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)
