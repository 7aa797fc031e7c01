"""The one place a retrieval backend is chosen (``ALEXNET_VECTOR_BACKEND``)."""

from __future__ import annotations

from model_store.store import ModelVersion
from service.faiss_retrieval import load_faiss_retrieval
from service.retrieval import Retrieval
from service.settings import Settings


def load_retrieval(version: ModelVersion, settings: Settings | None = None) -> Retrieval:
    """The version's FAISS gallery (an empty one, written on the first add, if it has none yet); with
    ``vector_backend`` "milvus", its Milvus collection (seeded from that gallery when new)."""
    if settings is not None and settings.vector_backend == "milvus":
        from service.milvus_retrieval import load_milvus_retrieval  # pymilvus only when chosen

        return load_milvus_retrieval(version, settings)
    return load_faiss_retrieval(version)
