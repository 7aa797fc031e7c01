"""One API contract: the SDK's answer types (``alexnet_client.types``) against the service's OpenAPI
document (``create_app(...).openapi()``, made from ``service/schemas.py``), field by field.

The SDK does not import the service (it installs alone), so this test is what keeps the two in
step: a field added, removed, renamed, retyped or made optional on either side fails here.
Rules: every response model a route can answer with has an SDK class of the same name
(``WIRE_TYPES``) or is listed below as not parsed; the class has exactly the schema's fields; a
field has a default in the SDK only where the schema neither requires it nor gives it a default (a
pydantic default_factory), and then None or an empty mapping; types map as integer -> int,
number -> float, string -> str, boolean -> bool, enum/const -> Literal of the same values,
array -> tuple[X, ...], object -> Mapping[str, X], X or null -> X | None, a model -> the SDK class
of its name.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from typing import Any, Literal, Union

import pytest
from alexnet_client import types as sdk
from alexnet_client.types import WIRE_TYPES

from service.app import create_app
from service.settings import Settings

# Models in the document that the SDK does not parse, and why.
NOT_PARSED = {
    "ReloadResponse": "POST /admin/reload is an operator's route; the SDK has no method for it",
}
# Nested models the SDK passes through as plain mappings (the manifest's preprocessing and ONNX names).
OPAQUE = {"PreprocessingSpec", "OnnxSignature"}
# What each route the SDK calls answers with on success (errors: ErrorResponse, checked below).
SDK_ROUTES = {
    ("post", "/classify"): sdk.ClassifyResponse,
    ("post", "/similar"): sdk.SimilarResponse,
    ("post", "/index"): sdk.IndexAddResponse,
    ("delete", "/index/{item_id}"): sdk.IndexDeleteResponse,
    ("get", "/healthz"): sdk.HealthResponse,
    ("get", "/readyz"): sdk.ReadyResponse,
    ("get", "/v1/models"): sdk.ModelsResponse,
    ("get", "/gallery/{item_id}/thumbnail"): None,  # image/jpeg bytes
}


@pytest.fixture(scope="module")
def openapi() -> dict[str, Any]:
    return create_app(Settings(_env_file=None)).openapi()  # type: ignore[call-arg]


def ref_name(schema: Mapping[str, Any]) -> str | None:
    ref = schema.get("$ref")
    return ref.rsplit("/", 1)[-1] if isinstance(ref, str) else None


def schema_form(schema: Mapping[str, Any]) -> Any:
    """A property's JSON schema in a form comparable with ``sdk_form``."""
    if (name := ref_name(schema)) is not None:
        return ("map", "any") if name in OPAQUE else ("model", name)
    if "anyOf" in schema:
        options = [option for option in schema["anyOf"] if option.get("type") != "null"]
        assert len(options) == 1 and len(schema["anyOf"]) == 2, schema
        return ("optional", schema_form(options[0]))
    if "const" in schema:
        return ("literal", frozenset([schema["const"]]))
    if "enum" in schema:
        return ("literal", frozenset(schema["enum"]))
    kind = schema.get("type")
    if kind == "array":
        return ("list", schema_form(schema["items"]))
    if kind == "object":
        values = schema.get("additionalProperties", True)
        return ("map", "any" if values is True else schema_form(values))
    return {"integer": "int", "number": "float", "string": "str", "boolean": "bool"}[kind]


def sdk_form(annotation: Any) -> Any:
    """An SDK field's annotation in the form of ``schema_form``."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if annotation is Any:
        return "any"
    if origin in (Union, types.UnionType):
        (inner,) = [arg for arg in args if arg is not type(None)]
        return ("optional", sdk_form(inner))
    if origin is Literal:
        return ("literal", frozenset(args))
    if origin is tuple:
        assert len(args) == 2 and args[1] is Ellipsis, annotation
        return ("list", sdk_form(args[0]))
    if origin is Mapping:
        assert args[0] is str, annotation
        return ("map", sdk_form(args[1]))
    if isinstance(annotation, type) and annotation in WIRE_TYPES:
        return ("model", annotation.__name__)
    return {int: "int", float: "float", str: "str", bool: "bool"}[annotation]


def referenced(schema: Any, schemas: Mapping[str, Any], found: set[str]) -> set[str]:
    """Every model ``schema`` names, directly or through the models it names."""
    if isinstance(schema, dict):
        name = ref_name(schema)
        if name is not None and name not in found:
            found.add(name)
            referenced(schemas[name], schemas, found)
        for value in schema.values():
            referenced(value, schemas, found)
    elif isinstance(schema, list):
        for value in schema:
            referenced(value, schemas, found)
    return found


def json_schema(response: Mapping[str, Any]) -> Mapping[str, Any] | None:
    return response.get("content", {}).get("application/json", {}).get("schema")


def test_every_model_the_sdk_can_receive_has_an_sdk_type(openapi: dict[str, Any]) -> None:
    schemas = openapi["components"]["schemas"]
    answers: set[str] = set()
    for operations in openapi["paths"].values():
        for operation in operations.values():
            for response in operation["responses"].values():
                if (schema := json_schema(response)) is not None:
                    referenced(schema, schemas, answers)
    sdk_names = {cls.__name__ for cls in WIRE_TYPES}
    assert answers - set(NOT_PARSED) - OPAQUE == sdk_names
    assert sdk_names <= set(schemas) and set(NOT_PARSED) | OPAQUE <= set(schemas)


def test_each_route_the_sdk_calls_answers_with_the_type_it_parses(openapi: dict[str, Any]) -> None:
    for (method, path), cls in SDK_ROUTES.items():
        responses = openapi["paths"][path][method]["responses"]
        success = json_schema(responses["200"])
        if cls is None:
            assert "image/jpeg" in responses["200"]["content"], path
        else:
            assert success is not None and ref_name(success) == cls.__name__, (method, path, success)
        for status, response in responses.items():
            if status.startswith(("4", "5")):
                assert ref_name(json_schema(response) or {}) == "ErrorResponse", (path, status)


@pytest.mark.parametrize("cls", WIRE_TYPES, ids=lambda cls: cls.__name__)
def test_sdk_type_has_the_schemas_fields(openapi: dict[str, Any], cls: type[sdk.WireType]) -> None:
    schema = openapi["components"]["schemas"][cls.__name__]
    properties, required = schema["properties"], set(schema.get("required", ()))
    hints = cls.wire_fields()
    assert list(hints) and set(hints) == set(properties), (
        f"{cls.__name__}: SDK {list(hints)}, service {list(properties)}"
    )
    for field in dataclasses.fields(cls):  # type: ignore[arg-type]
        prop = properties[field.name]
        always_sent = field.name in required or "default" in prop
        where = f"{cls.__name__}.{field.name}"
        if always_sent:
            assert field.default is dataclasses.MISSING, (
                f"{where}: the service always sends it; the SDK must require it"
            )
            assert sdk_form(hints[field.name]) == schema_form(prop), where
        elif field.default is None:
            assert sdk_form(hints[field.name]) == ("optional", schema_form(prop)), where
        else:
            assert field.default_factory is dict, f"{where}: the service may leave it out; the SDK must not require it"
            assert sdk_form(hints[field.name]) == schema_form(prop), where


def test_sdk_types_parse_only_the_declared_types() -> None:
    good = {"id": 3, "deleted": True, "gallery_size": 9, "future_field": [1]}
    assert sdk.IndexDeleteResponse.from_json(good) == sdk.IndexDeleteResponse(3, True, 9)  # unknown keys ignored
    for broken, error in [
        ({**good, "deleted": False}, ValueError),
        ({**good, "id": "3"}, TypeError),
        ({**good, "id": True}, TypeError),
        ({**good, "gallery_size": 9.5}, TypeError),
        ({"id": 3, "deleted": True}, KeyError),
    ]:
        with pytest.raises(error):
            sdk.IndexDeleteResponse.from_json(broken)
    query = {
        "id": None,
        "filename": "q.jpg",
        "label": None,
        "predictions": [{"index": 1, "label": "b", "probability": 1}],
    }
    parsed = sdk.SimilarQuery.from_json(query)
    assert parsed.predictions == (sdk.Prediction(1, "b", 1.0),) and isinstance(parsed.predictions[0].probability, float)
    assert sdk.SimilarQuery.from_json({**query, "predictions": None}).predictions is None
    with pytest.raises(ValueError):
        sdk.ClassifyResponse.from_json(
            {"model": {"name": "m", "version": "v1"}, "tta": "five_crop", "results": [], "elapsed_ms": 1}
        )
