"""Parsing of answers the fake service does not give: the shapes the service answers besides the
documented ones, unknown fields, and Retry-After forms."""

from __future__ import annotations

import email.utils
import time

import pytest
from alexnet_client._exceptions import parse_retry_after
from alexnet_client.types import IndexAddResponse, IndexRemoveResponse, ModelInfo, Readiness, SimilarQuery


def test_index_answers_in_both_shapes() -> None:
    documented = IndexAddResponse.from_json({"added": [{"id": 3, "label": "cat"}]})
    assert documented.added[0].id == 3 and documented.gallery_size is None
    service = IndexAddResponse.from_json(
        {
            "ids": [3],
            "items": [{"id": 3, "label": "cat", "source": "upload:a.jpg", "thumbnail_url": "/gallery/3/thumbnail"}],
            "gallery_size": 10,
        }
    )
    assert (service.added[0].source, service.added[0].thumbnail_url, service.gallery_size) == (
        "upload:a.jpg",
        "/gallery/3/thumbnail",
        10,
    )

    assert IndexRemoveResponse.from_json({"deleted": 3}) == IndexRemoveResponse(deleted=3)
    assert IndexRemoveResponse.from_json({"id": 3, "deleted": True, "gallery_size": 9}) == IndexRemoveResponse(3, 9)
    with pytest.raises(ValueError):
        IndexRemoveResponse.from_json({"id": 3, "deleted": False})


def test_model_info_in_both_shapes() -> None:
    manifest = {"name": "m", "version": "v2", "labels": ["a", "b"], "variant": "grouped", "feature_dim": 4096}
    flat = ModelInfo.from_json({**manifest, "provider": "CPUExecutionProvider", "gallery_size": 4, "future": 1})
    nested = ModelInfo.from_json(
        {
            "models": [
                {
                    "name": "m",
                    "version": "v2",
                    "provider": "CPUExecutionProvider",
                    "gallery_size": 4,
                    "manifest": manifest,
                }
            ]
        }
    )
    for info in (flat, nested):
        assert (info.name, info.version, info.labels, info.provider, info.gallery_size) == (
            "m",
            "v2",
            ("a", "b"),
            "CPUExecutionProvider",
            4,
        )
    assert flat.manifest["future"] == 1
    assert flat.precision == nested.precision == "fp32"  # a service that does not say serves fp32
    served = {**manifest, "provider": "x", "gallery_size": 0, "precision": "bf16"}
    assert ModelInfo.from_json(served).precision == "bf16"


def test_optional_query_fields_and_readiness_details() -> None:
    query = SimilarQuery.from_json({"id": 5, "filename": None, "label": "cat", "predictions": None})
    assert query.predictions == ()
    readiness = Readiness.from_json({"status": "ready", "provider": "CUDAExecutionProvider"}, ready=True)
    assert readiness.details == {"provider": "CUDAExecutionProvider"}
    error = {"error": {"code": "not_ready", "message": "loading"}}
    assert Readiness.from_json(error, ready=False) == Readiness(ready=False, status="not_ready", details=error)


def test_retry_after_forms() -> None:
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after("0.5") == 0.5
    assert parse_retry_after("-4") == 0.0
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None and parse_retry_after("nan") is None
    in_ten_seconds = email.utils.formatdate(time.time() + 10, usegmt=True)
    assert 8.0 <= parse_retry_after(in_ten_seconds) <= 10.0  # type: ignore[operator]
