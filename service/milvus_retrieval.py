"""The gallery in a Milvus collection (``ALEXNET_VECTOR_BACKEND=milvus``), for replicas that share one
index and for galleries past one machine's memory (docs/scaling.md). A ``service.retrieval.Retrieval``;
imported only when ``service.retrieval_backends.load_retrieval`` chooses it, so the default service
never needs pymilvus.

One collection per model version (``alexnet_caltech101_v1`` by default), one row per item::

    id INT64 (primary, our ids)   vector FLOAT_VECTOR[dim]   label VARCHAR   source VARCHAR (nullable)
    thumbnail VARCHAR             the 96 px JPEG, base64 (memory-mapped, not held in RAM)

Thumbnails live in the row, not on a replica's disk, so every replica serves every item's. The next
id to hand out is the collection property ``alexnet.next_id``; an add raises it before inserting,
so a crash can leave a gap but never reuse an id. That is a read-then-write: one process adds and
removes at a time (the compose file sends those routes to one writer), any number search.

A collection that does not exist yet is seeded from the version's FAISS gallery (same ids, labels,
sources, thumbnails) under a temporary name and then renamed, so replicas starting together cannot
seed it twice. It is created with an exact (FLAT) L2 index; an operator may replace the index (IVF,
HNSW, DiskANN) on the collection without the service noticing. Milvus reports squared L2, the
service the Euclidean distance, as the FAISS path does.

pymilvus is synchronous: searches and changes run on worker threads, as FAISS's do; the few
lookups of one item by id (``item``, ``vector``, ``__len__``) are primary-key reads made inline.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import re
import threading
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
from pymilvus import DataType, MilvusClient, MilvusException

from model_store.gallery import Gallery, GalleryError, GalleryItem, Neighbor, UnknownItemError, as_vectors, euclidean
from model_store.store import ModelVersion
from service.errors import ServiceError
from service.retrieval import Retrieval
from service.settings import Settings

log = logging.getLogger(__name__)

NEXT_ID_PROPERTY = "alexnet.next_id"
MAX_LABEL_BYTES = 512  # VARCHAR lengths are bytes: 100 characters of UTF-8 and then some
MAX_SOURCE_BYTES = 1024  # "upload:" + a file name of at most 255 characters
MAX_THUMBNAIL_BYTES = 65_535  # the largest VARCHAR; a 96 px JPEG in base64 is about 5-10 KB
SEED_BATCH = 256  # rows per insert while seeding (4096-d: 4 MiB of vectors)
TIMEOUT_S = 30.0
OUTPUT_FIELDS = ["label", "source"]
# Searches may lag the latest change by Milvus's bounded staleness (seconds) rather than wait for
# every write up to now (Strong: up to a time tick, ~200 ms, per search); reads of one item by id,
# the count and the changes are Strong, so a thumbnail_url from POST /index works on any replica.
SEARCH_CONSISTENCY = "Bounded"


class VectorDatabaseUnavailable(ServiceError):
    status, code = 503, "vector_db_unavailable"


def collection_name(settings: Settings, version: ModelVersion) -> str:
    """``milvus_collection``, or the model's name and version made a valid Milvus name."""
    if settings.milvus_collection:
        return settings.milvus_collection
    name = re.sub(r"[^A-Za-z0-9_]", "_", f"{version.manifest.name}_{version.manifest.version}")
    return name if re.match(r"[A-Za-z_]", name) else f"_{name}"


def collection_schema(dim: int) -> Any:
    schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("vector", DataType.FLOAT_VECTOR, dim=dim)
    schema.add_field("label", DataType.VARCHAR, max_length=MAX_LABEL_BYTES)
    schema.add_field("source", DataType.VARCHAR, max_length=MAX_SOURCE_BYTES, nullable=True)
    schema.add_field("thumbnail", DataType.VARCHAR, max_length=MAX_THUMBNAIL_BYTES, mmap_enabled=True)
    return schema


def _rows(ids: Sequence[int], vectors: np.ndarray, labels, sources, thumbnails) -> list[dict[str, Any]]:
    rows = []
    for item_id, vector, label, source, jpeg in zip(ids, vectors, labels, sources, thumbnails, strict=True):
        encoded = base64.b64encode(jpeg).decode("ascii")
        if len(encoded) > MAX_THUMBNAIL_BYTES:
            raise ValueError(f"thumbnail of item {item_id} is {len(jpeg)} bytes, too large for the collection")
        rows.append({"id": int(item_id), "vector": vector.tolist(), "label": label, "source": source,
                     "thumbnail": encoded})  # fmt: skip
    return rows


def _create(client: MilvusClient, name: str, dim: int, next_id: int) -> None:
    index = client.prepare_index_params()
    index.add_index(field_name="vector", index_type="FLAT", metric_type="L2")
    client.create_collection(
        name,
        schema=collection_schema(dim),
        index_params=index,
        consistency_level="Strong",  # the default for reads that name none
        properties={NEXT_ID_PROPERTY: str(next_id)},
        timeout=TIMEOUT_S,
    )


def seed_collection(client: MilvusClient, name: str, gallery: Gallery) -> None:
    """Create ``name`` holding ``gallery``'s items, unless another process does so first."""
    items = sorted(gallery.items(), key=lambda item: item.id)
    staging = f"{name}__seeding_{uuid.uuid4().hex[:12]}"
    _create(client, staging, gallery.dim, max((item.id for item in items), default=-1) + 1)
    try:
        for start in range(0, len(items), SEED_BATCH):
            batch = items[start : start + SEED_BATCH]
            ids = [item.id for item in batch]
            vectors = np.stack([gallery.vector(i) for i in ids])
            thumbnails = [gallery.thumbnail_path(i).read_bytes() for i in ids]
            rows = _rows(ids, vectors, [it.label for it in batch], [it.source for it in batch], thumbnails)
            client.insert(staging, rows, timeout=TIMEOUT_S)
        client.rename_collection(staging, name, timeout=TIMEOUT_S)
    except BaseException as exc:
        client.drop_collection(staging, timeout=TIMEOUT_S)
        if not (isinstance(exc, MilvusException) and client.has_collection(name, timeout=TIMEOUT_S)):
            raise
        log.info("milvus collection %s was seeded by another process", name)
    else:
        log.info("seeded milvus collection %s with the %d items of %s", name, len(items), gallery.directory)


def _collection_dim(client: MilvusClient, name: str) -> int:
    fields = client.describe_collection(name, timeout=TIMEOUT_S)["fields"]
    return int(next(f for f in fields if f["name"] == "vector")["params"]["dim"])


class MilvusRetrieval(Retrieval):
    """``Retrieval`` over the Milvus collection ``name`` (which must exist and hold ``dim``-d vectors)."""

    def __init__(self, client: MilvusClient, name: str, dim: int, retry_after_s: int = 1):
        self.client = client
        self.name = name
        self.dim = dim
        self.retry_after_s = retry_after_s
        self._write_lock = threading.Lock()

    @contextmanager
    def _milvus(self, doing: str) -> Iterator[None]:
        """Milvus failures as 503s: the replica stays up and the client retries."""
        try:
            yield
        except MilvusException as exc:
            log.warning("milvus %s on %s failed: %s", doing, self.name, exc)
            raise VectorDatabaseUnavailable(
                f"the vector database failed to {doing}: {exc.message}", {"Retry-After": str(self.retry_after_s)}
            ) from exc

    def _get(self, item_id: int, fields: list[str]) -> dict[str, Any]:
        with self._milvus("read an item"):
            rows = self.client.get(
                self.name, ids=[int(item_id)], output_fields=fields, consistency_level="Strong", timeout=TIMEOUT_S
            )
        if not rows:
            raise UnknownItemError(item_id)
        return rows[0]

    def __len__(self) -> int:
        with self._milvus("count the items"):
            (row,) = self.client.query(
                self.name, filter="", output_fields=["count(*)"], consistency_level="Strong", timeout=TIMEOUT_S
            )
        return int(row["count(*)"])

    def item(self, item_id: int) -> GalleryItem:
        row = self._get(item_id, OUTPUT_FIELDS)
        return _item(item_id, row)

    def vector(self, item_id: int) -> np.ndarray:
        return np.asarray(self._get(item_id, ["vector"])["vector"], dtype=np.float32)

    def thumbnail(self, item_id: int) -> bytes:
        return base64.b64decode(self._get(item_id, ["thumbnail"])["thumbnail"])

    def _search(self, vector: np.ndarray, n: int) -> list[Neighbor]:
        query = as_vectors(vector[None, :], self.dim)
        with self._milvus("search"):
            (hits,) = self.client.search(
                self.name,
                data=query.tolist(),
                limit=n,
                anns_field="vector",
                search_params={"metric_type": "L2"},
                output_fields=OUTPUT_FIELDS,
                consistency_level=SEARCH_CONSISTENCY,
                timeout=TIMEOUT_S,
            )
        distances = euclidean(np.array([hit["distance"] for hit in hits], dtype=np.float64))
        return [Neighbor(_item(hit["id"], hit["entity"]), float(d)) for hit, d in zip(hits, distances, strict=True)]

    async def _nearest(self, vector: np.ndarray, n: int) -> list[Neighbor]:
        return await asyncio.to_thread(self._search, vector, n)

    def _next_id(self) -> int:
        properties = self.client.describe_collection(self.name, timeout=TIMEOUT_S).get("properties", {})
        return int(properties.get(NEXT_ID_PROPERTY, 0))

    def _add(self, vectors: np.ndarray, labels, sources, thumbnails) -> list[GalleryItem]:
        vectors = as_vectors(vectors, self.dim)
        count = len(vectors)
        if not count or not (len(labels) == len(sources) == len(thumbnails) == count):
            raise ValueError("add needs one label, source and thumbnail per vector, and at least one vector")
        with self._write_lock, self._milvus("add items"):
            first = self._next_id()
            ids = list(range(first, first + count))
            rows = _rows(ids, vectors, labels, sources, thumbnails)
            # reserved before the insert: a crash in between leaves a gap, never a reused id
            self.client.alter_collection_properties(
                self.name, properties={NEXT_ID_PROPERTY: str(first + count)}, timeout=TIMEOUT_S
            )
            self.client.insert(self.name, rows, timeout=TIMEOUT_S)
        return [GalleryItem(i, label, source, "") for i, label, source in zip(ids, labels, sources, strict=True)]

    async def add(
        self, vectors: np.ndarray, labels: Sequence[str], sources: Sequence[str | None], thumbnails: Sequence[bytes]
    ) -> list[GalleryItem]:
        items = await asyncio.to_thread(self._add, vectors, labels, sources, thumbnails)
        log.info("milvus %s: added ids %s", self.name, [item.id for item in items])
        return items

    def _remove(self, item_id: int) -> GalleryItem:
        with self._write_lock:
            item = self.item(item_id)
            with self._milvus("remove an item"):
                self.client.delete(self.name, ids=[int(item_id)], timeout=TIMEOUT_S)
        return item

    async def remove(self, item_id: int) -> GalleryItem:
        item = await asyncio.to_thread(self._remove, item_id)
        log.info("milvus %s: removed id %d", self.name, item_id)
        return item


def _item(item_id: int, row: dict[str, Any]) -> GalleryItem:
    # thumbnail: no file name, the JPEG is in the row
    return GalleryItem(id=int(item_id), label=row["label"], source=row.get("source"), thumbnail="")


def load_milvus_retrieval(version: ModelVersion, settings: Settings) -> MilvusRetrieval:
    """The version's collection on ``settings.milvus_uri``, seeded from its FAISS gallery if new."""
    dim = version.manifest.feature_dim
    token = settings.milvus_token.get_secret_value() if settings.milvus_token else ""
    client = MilvusClient(uri=settings.milvus_uri, token=token, timeout=TIMEOUT_S)
    name = collection_name(settings, version)
    if not client.has_collection(name, timeout=TIMEOUT_S):
        seed_collection(client, name, Gallery.open(version.index_dir, dim))
    if (stored := _collection_dim(client, name)) != dim:
        raise GalleryError(f"milvus collection {name} holds {stored}-d vectors, the model makes {dim}-d")
    client.load_collection(name, timeout=TIMEOUT_S)
    retrieval = MilvusRetrieval(client, name, dim, settings.retry_after_s)
    if NEXT_ID_PROPERTY not in client.describe_collection(name, timeout=TIMEOUT_S).get("properties", {}):
        # made by someone else (e.g. bulk-imported): ids from 0 would collide with the rows it holds
        if len(retrieval):
            raise GalleryError(f"milvus collection {name} has rows but no {NEXT_ID_PROPERTY} property: set it")
        client.alter_collection_properties(name, properties={NEXT_ID_PROPERTY: "0"}, timeout=TIMEOUT_S)
    log.info("serving the gallery from milvus collection %s at %s: %d items", name, settings.milvus_uri, len(retrieval))
    return retrieval
