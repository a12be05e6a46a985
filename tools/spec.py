"""What a model is told about a tool: its name, a one-line description and a JSON schema of its arguments.

The schema is derived from the tool's pydantic input model and trimmed to what a model needs (types, enums,
required fields, bounds); titles and long property descriptions are dropped so the tool block stays short in a
small model's context. The same :class:`ToolSpec` drives the prompt, the constrained decoder and validation.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

__all__ = ["ToolSpec", "compact_schema"]

_KEEP_KEYS = ("type", "enum", "minimum", "maximum", "minLength", "maxLength", "items", "anyOf", "const", "default")


def _compact_property(schema: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    if "$ref" in schema:
        schema = defs[schema["$ref"].rsplit("/", 1)[-1]]
    out: dict[str, Any] = {}
    for key in _KEEP_KEYS:
        if key not in schema:
            continue
        value = schema[key]
        if key == "items" and isinstance(value, dict):
            value = _compact_property(value, defs)
        elif key == "anyOf":
            options = [_compact_property(option, defs) for option in value if option.get("type") != "null"]
            if len(options) == 1:
                out.update(options[0])
                continue
            value = options
        out[key] = value
    return out


def compact_schema(full: dict[str, Any]) -> dict[str, Any]:
    """A pydantic ``model_json_schema()`` without titles, descriptions and ``$defs`` indirection."""
    defs = full.get("$defs", {})
    properties = {name: _compact_property(prop, defs) for name, prop in full.get("properties", {}).items()}
    schema: dict[str, Any] = {"type": "object", "properties": properties}
    if full.get("required"):
        schema["required"] = list(full["required"])
    return schema


@dataclass(frozen=True)
class ToolSpec:
    """A tool as a model sees it."""

    name: str
    description: str
    parameters: dict[str, Any] = field(default_factory=lambda: {"type": "object", "properties": {}})

    @classmethod
    def from_input_model(cls, name: str, description: str, input_model: type) -> ToolSpec:
        """Build from a pydantic model class (its JSON schema, compacted)."""
        return cls(name=name, description=description, parameters=compact_schema(input_model.model_json_schema()))

    def to_json(self, *, brief: bool = True) -> str:
        """One line of JSON: ``{"name": ..., "description": ..., "parameters": {...}}``.

        ``brief`` (the prompt form) keeps types, enums and required fields and drops bounds and null defaults;
        validation always uses the full :attr:`parameters`.
        """
        parameters = _brief(self.parameters) if brief else self.parameters
        payload = {"name": self.name, "description": self.description, "parameters": parameters}
        return json.dumps(payload, ensure_ascii=False, separators=(",", ":") if brief else (", ", ": "))


_BRIEF_DROP = {"minimum", "maximum", "minLength", "maxLength"}


def _brief(schema: dict[str, Any]) -> dict[str, Any]:
    properties = {}
    for name, prop in schema.get("properties", {}).items():
        properties[name] = {
            k: v for k, v in prop.items() if k not in _BRIEF_DROP and not (k == "default" and v is None)
        }
    out: dict[str, Any] = {"type": "object", "properties": properties}
    if schema.get("required"):
        out["required"] = schema["required"]
    return out
