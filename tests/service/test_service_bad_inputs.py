"""Bad input gets a clear JSON error and the service keeps serving; awkward but valid images work.
On the service app with the fake model (tests/fake_serving.py): the upload checks, the decoding and
the error handlers are the real ones."""

from __future__ import annotations

import httpx
import pytest
from fake_serving import TEST_API_KEY, FastService, picture
from image_helpers import encode, png_declaring
from service_helpers import assert_error, assert_serving, awkward_encodings

MIB = 1024 * 1024


@pytest.fixture
def client(fast: FastService) -> httpx.Client:
    return fast.client


@pytest.fixture(scope="module")
def face_jpeg() -> bytes:
    """A photo-sized JPEG (538x355), as large as the Caltech-101 face the live tests send."""
    return encode(picture(538, 355, 11), quality=95)


@pytest.fixture(scope="module")
def odd_images() -> dict[str, tuple[bytes, tuple[int, int]]]:
    return awkward_encodings(picture(538, 355, 11))


@pytest.mark.parametrize(
    ("name", "content_type", "make", "status", "code"),
    [
        ("empty.jpg", "image/jpeg", lambda jpeg: b"", 400, "bad_image"),
        ("truncated.jpg", "image/jpeg", lambda jpeg: jpeg[: len(jpeg) // 2], 400, "bad_image"),
        ("garbage.jpg", "image/jpeg", lambda jpeg: b"\xff\xd8\xff\xe0" + b"\x00" * 500, 400, "bad_image"),
        ("notes.jpg", "application/octet-stream", lambda jpeg: b"just some text\n" * 10, 400, "bad_image"),
        ("notes.txt", "text/plain", lambda jpeg: b"just some text\n", 415, "unsupported_media_type"),
        ("doc.pdf", "application/pdf", lambda jpeg: jpeg, 415, "unsupported_media_type"),
        ("bomb.png", "image/png", lambda jpeg: png_declaring(100_000, 100_000), 413, "image_too_large"),
        ("big.png", "image/png", lambda jpeg: png_declaring(5_000, 5_000), 413, "image_too_large"),
        ("huge.jpg", "image/jpeg", lambda jpeg: jpeg + b"\x00" * MIB, 413, "payload_too_large"),
    ],
)
def test_bad_files(
    client: httpx.Client, face_jpeg: bytes, name: str, content_type: str, make, status: int, code: str
) -> None:
    data = make(face_jpeg)
    for route, field in (("/classify", "files"), ("/similar", "file")):
        error = assert_error(client.post(route, files={field: (name, data, content_type)}), status, code)
        assert name in error["message"]
    assert_serving(client, face_jpeg)


def test_one_bad_file_fails_the_request_naming_it(client: httpx.Client, face_jpeg: bytes) -> None:
    files = [("files", ("good.jpg", face_jpeg, "image/jpeg")), ("files", ("bad.jpg", face_jpeg[:300], "image/jpeg"))]
    assert "bad.jpg" in assert_error(client.post("/classify", files=files), 400, "bad_image")["message"]
    assert_serving(client, face_jpeg)


def test_awkward_images_are_classified_upright(client: httpx.Client, odd_images) -> None:
    for name, (data, (width, height)) in odd_images.items():
        response = client.post("/classify", files={"files": (name, data, "image/*")}, data={"tta": "center"})
        assert response.status_code == 200, (name, response.text)
        result = response.json()["results"][0]
        assert (result["width"], result["height"]) == (width, height), name


def test_body_limits(client: httpx.Client, face_jpeg: bytes) -> None:
    # Content-Length over max_request_bytes (3 MiB): refused before the body is read
    big = [("files", (f"{i}.jpg", face_jpeg + b"\x00" * (MIB - len(face_jpeg) - 1), "image/jpeg")) for i in range(4)]
    assert_error(client.post("/classify", files=big), 413, "payload_too_large")
    # no Content-Length (chunked): counted while read, refused once past the limit
    boundary = "b0undary"
    part = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="x.jpg"\r\n'
        "Content-Type: image/jpeg\r\n\r\n"
    ).encode()

    def chunks():
        yield part
        for _ in range(8):
            yield b"\x00" * (512 * 1024)
        yield f"\r\n--{boundary}--\r\n".encode()

    response = client.post(
        "/classify", content=chunks(), headers={"Content-Type": f"multipart/form-data; boundary={boundary}"}
    )
    assert_error(response, 413, "payload_too_large")
    too_many = [("files", (f"{i}.jpg", face_jpeg, "image/jpeg")) for i in range(5)]  # max_files_per_request = 4
    assert "limit is 4" in assert_error(client.post("/classify", files=too_many), 413, "payload_too_large")["message"]
    assert_serving(client, face_jpeg)


@pytest.mark.parametrize(
    ("route", "params", "data", "needle"),
    [
        ("/classify", {"top_k": 0}, {}, "top_k"),
        ("/classify", {}, {"top_k": "6"}, "between 1 and 5"),
        ("/classify", {}, {"top_k": "many"}, "top_k"),
        ("/classify", {"top_k": 2}, {"top_k": "3"}, "query parameter"),
        ("/classify", {}, {"tta": "twelve_crop"}, "tta"),
        ("/similar", {"k": 0}, {}, "k"),
        ("/similar", {}, {"k": "11"}, "between 1 and 10"),
        ("/similar", {}, {"feature": "fc6"}, "feature"),
    ],
)
def test_bad_parameters(
    client: httpx.Client, face_jpeg: bytes, route: str, params: dict, data: dict, needle: str
) -> None:
    field = "files" if route == "/classify" else "file"
    response = client.post(route, params=params, data=data, files={field: ("f.jpg", face_jpeg, "image/jpeg")})
    assert needle in assert_error(response, 422, "invalid_parameter")["message"]


def test_bad_requests(client: httpx.Client, face_jpeg: bytes) -> None:
    assert_error(client.post("/classify", data={"top_k": "3"}), 422, "invalid_parameter")  # no files
    assert_error(client.post("/classify", json={"files": []}), 415, "unsupported_media_type")
    raw = client.post("/classify", content=face_jpeg, headers={"Content-Type": "image/jpeg"})
    assert_error(raw, 415, "unsupported_media_type")
    assert_error(client.post("/similar", data={"k": "3"}), 422, "invalid_parameter")  # neither file nor id
    both = client.post("/similar", data={"id": "1"}, files={"file": ("f.jpg", face_jpeg, "image/jpeg")})
    assert "either" in assert_error(both, 422, "invalid_parameter")["message"]
    by_id_ten_crop = client.post("/similar", data={"id": "1", "feature": "ten_crop"})
    assert "send a file" in assert_error(by_id_ten_crop, 422, "invalid_parameter")["message"]
    assert_error(client.post("/similar", data={"id": "99999"}), 404, "not_found")
    assert_error(client.get("/gallery/99999/thumbnail"), 404, "not_found")
    assert_error(client.get("/gallery/-1/thumbnail"), 422, "invalid_parameter")
    assert_error(client.get("/gallery/../../etc/passwd/thumbnail"), 404)
    assert_error(client.get("/no/such/route"), 404, "not_found")
    assert_error(client.get("/classify"), 405, "method_not_allowed")
    assert_serving(client, face_jpeg)


def test_gallery_changes_need_the_api_key(client: httpx.Client, face_jpeg: bytes) -> None:
    files = {"files": ("f.jpg", face_jpeg, "image/jpeg")}
    assert_error(client.post("/index", files=files, data={"labels": "x"}), 401, "missing_api_key")
    wrong = {"X-API-Key": TEST_API_KEY + "-wrong"}
    assert_error(client.post("/index", files=files, data={"labels": "x"}, headers=wrong), 403, "forbidden")
    assert_error(client.delete("/index/0", headers=wrong), 403, "forbidden")
    assert_error(client.delete("/index/0"), 401, "missing_api_key")
    key = {"X-API-Key": TEST_API_KEY}
    assert_error(client.delete("/index/99999", headers=key), 404, "not_found")
    two = [("files", ("a.jpg", face_jpeg, "image/jpeg")), ("files", ("b.jpg", face_jpeg, "image/jpeg"))]
    bad_labels = client.post("/index", files=two, data={"labels": ["a", "b", "c"]}, headers=key)
    assert "one label per file" in assert_error(bad_labels, 422, "invalid_parameter")["message"]
    blank = client.post("/index", files=two, data={"labels": " "}, headers=key)
    assert_error(blank, 422, "invalid_parameter")
    truncated = [("files", ("a.jpg", face_jpeg, "image/jpeg")), ("files", ("b.jpg", face_jpeg[:200], "image/jpeg"))]
    size = client.get("/readyz").json()["gallery_size"]
    assert_error(client.post("/index", files=truncated, data={"labels": "x"}, headers=key), 400, "bad_image")
    assert client.get("/readyz").json()["gallery_size"] == size  # nothing half-added
    assert client.get("/gallery/0/thumbnail").status_code == 200
