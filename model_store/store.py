"""The on-disk model store: ``<root>/<model>/<version>/`` with model.onnx, mean.npy, metrics.json,
manifest.json (which holds the sha256 of every other file) and, added later, ``index/``.

Publishing is atomic: everything is written and fsynced in a hidden temporary folder beside the
versions, then renamed into place, so a reader sees a whole version or none. Versions are named
``v1``, ``v2``, ...; ``latest`` is the highest number.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from model_store.manifest import MANIFEST_FILE, MEAN_FILE, MODEL_FILE, MODEL_FILES, Manifest
from model_store.preprocessing import DEFAULT_MAX_PIXELS, Preprocessor

log = logging.getLogger(__name__)
VERSION_RE = re.compile(r"^v(\d+)$")
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
INDEX_DIR = "index"


class StoreError(RuntimeError):
    """The store has no such model/version, or a version is corrupt."""


class CorruptVersionError(StoreError):
    pass


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _check_name(name: str) -> str:
    if not NAME_RE.match(name):
        raise StoreError(f"invalid model name {name!r}: use letters, digits, '.', '_' or '-'")
    return name


def list_versions(root: Path, name: str) -> list[str]:
    """Published versions of ``name``, oldest first."""
    model_dir = Path(root) / _check_name(name)
    if not model_dir.is_dir():
        return []
    found = [(int(m.group(1)), p.name) for p in model_dir.iterdir() if p.is_dir() and (m := VERSION_RE.match(p.name))]
    return [version for _, version in sorted(found)]


def list_models(root: Path) -> list[str]:
    root = Path(root)
    if not root.is_dir():
        return []
    return sorted(
        p.name for p in root.iterdir() if p.is_dir() and NAME_RE.match(p.name) and list_versions(root, p.name)
    )


def resolve(root: Path, name: str, version: str = "latest") -> Path:
    """The folder of ``name``/``version``; ``latest`` is the highest published version."""
    versions = list_versions(root, name)
    if not versions:
        raise StoreError(f"no published versions of model {name!r} under {root}")
    if version == "latest":
        version = versions[-1]
    if version not in versions:
        raise StoreError(f"model {name!r} has no version {version!r} (published: {', '.join(versions)})")
    return Path(root) / name / version


def publish_version(root: Path, manifest: Manifest, files: dict[str, Path]) -> Path:
    """Copy ``files`` (store name -> source path) into a new version of ``manifest.name``.

    The manifest gets its version and the sha256 of each file; the folder appears atomically.
    """
    if MODEL_FILE not in files or MEAN_FILE not in files:
        raise StoreError(f"a version needs at least {MODEL_FILE} and {MEAN_FILE}")
    model_dir = Path(root) / _check_name(manifest.name)
    model_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".publish-", dir=model_dir))
    try:
        checksums = {}
        for store_name, source in files.items():
            if "/" in store_name or store_name in (MANIFEST_FILE, INDEX_DIR):
                raise StoreError(f"invalid file name in a version: {store_name!r}")
            target = staging / store_name
            shutil.copyfile(source, target)
            fsync_path(target)
            checksums[store_name] = sha256_file(target)
        while True:
            versions = list_versions(root, manifest.name)
            number = int(versions[-1][1:]) + 1 if versions else 1
            final = manifest.model_copy(update={"version": f"v{number}", "files": checksums})
            manifest_path = staging / MANIFEST_FILE
            manifest_path.write_text(final.model_dump_json(indent=2))
            fsync_path(manifest_path)
            fsync_path(staging)
            try:
                os.rename(staging, model_dir / final.version)  # fails if a concurrent publisher took it
            except OSError:
                if (model_dir / final.version).exists():
                    continue
                raise
            fsync_path(model_dir)
            log.info("published %s/%s", final.name, final.version)
            return model_dir / final.version
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def read_manifest(version_dir: Path) -> Manifest:
    path = Path(version_dir) / MANIFEST_FILE
    try:
        return Manifest.model_validate_json(path.read_text())
    except FileNotFoundError as exc:
        raise CorruptVersionError(f"{version_dir} has no {MANIFEST_FILE} (partial or not a version)") from exc
    except ValueError as exc:
        raise CorruptVersionError(f"{path} is not a valid manifest: {exc}") from exc


def verify_version(version_dir: Path, manifest: Manifest) -> None:
    """Raise CorruptVersionError unless every file listed in the manifest exists with its sha256."""
    problems = []
    for store_name, expected in manifest.files.items():
        path = Path(version_dir) / store_name
        if not path.is_file():
            problems.append(f"{store_name} is missing")
        elif (actual := sha256_file(path)) != expected:
            problems.append(f"{store_name} has sha256 {actual[:12]}..., manifest says {expected[:12]}...")
    for required in (MODEL_FILE, manifest.preprocessing.mean_file):
        if required not in manifest.files:
            problems.append(f"the manifest lists no checksum for {required}")
    if problems:
        raise CorruptVersionError(f"model version {version_dir} is corrupt: " + "; ".join(problems))


@dataclass(frozen=True)
class ModelVersion:
    """A verified published version: where it is, what it says, and how to make its inputs."""

    path: Path
    manifest: Manifest

    @property
    def model_path(self) -> Path:
        return self.path / MODEL_FILE

    @property
    def precisions(self) -> list[str]:
        """The model precisions this version carries ("fp32", and "int8" when it was built)."""
        return [p for p, file in MODEL_FILES.items() if file in self.manifest.files]

    def model_file(self, precision: str = "fp32") -> Path:
        if precision not in MODEL_FILES:
            raise StoreError(f"unknown precision {precision!r}; known: {', '.join(MODEL_FILES)}")
        if precision not in self.precisions:
            raise StoreError(
                f"{self.manifest.name}/{self.manifest.version} has no {precision} model "
                f"(it has {', '.join(self.precisions)}); `alexnet quantize` publishes a version with one"
            )
        return self.path / MODEL_FILES[precision]

    @property
    def index_dir(self) -> Path:
        return self.path / INDEX_DIR

    def preprocessor(self, max_pixels: int | None = None) -> Preprocessor:
        spec = self.manifest.preprocessing
        mean = np.load(self.path / spec.mean_file, allow_pickle=False)
        limit = DEFAULT_MAX_PIXELS if max_pixels is None else max_pixels
        return Preprocessor(mean=mean, resize=spec.resize, crop=spec.crop, scale=spec.scale, max_pixels=limit)


def load_version(root: Path, name: str, version: str = "latest", verify: bool = True) -> ModelVersion:
    """Resolve, read the manifest and (by default) verify every checksum."""
    path = resolve(root, name, version)
    manifest = read_manifest(path)
    if verify:
        verify_version(path, manifest)
    return ModelVersion(path=path, manifest=manifest)


def write_json_atomic(path: Path, payload: object) -> None:
    """Write JSON through a temporary file + fsync + rename (used for metrics and index metadata)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(payload, indent=2))
    fsync_path(tmp)
    os.replace(tmp, path)
    fsync_path(path.parent)
