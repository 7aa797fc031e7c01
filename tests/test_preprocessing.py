"""model_store.preprocessing: decoding, resize + centre crop, mean subtraction, the 10 crops, softmax."""

from __future__ import annotations

import io

import numpy as np
import pytest
from image_helpers import (
    CALTECH_GRAYSCALE,
    CALTECH_SAMPLES,
    encode,
    png_declaring,
    position_chw,
    position_image,
)
from PIL import Image

from model_store.postprocessing import average_crop_probabilities, softmax
from model_store.preprocessing import (
    ImageError,
    ImageTooLargeError,
    Preprocessor,
    crop_offsets,
    decode_image,
    resize_center_crop,
    ten_crop,
)

# ---------------------------------------------------------------------------------------------
# The 10 crops


EXPECTED_TOP_LEFT = [(0, 0), (0, 32), (32, 0), (32, 32), (16, 16)]  # TL, TR, BL, BR, centre for 256 -> 224


def test_crop_offsets_256_to_224() -> None:
    assert crop_offsets(256, 224) == EXPECTED_TOP_LEFT


def test_ten_crop_positions_and_mirrors() -> None:
    chw = position_chw(256)
    crops = ten_crop(chw, 224)
    assert crops.shape == (10, 3, 224, 224)
    assert crops.flags["C_CONTIGUOUS"]
    for i, (top, left) in enumerate(EXPECTED_TOP_LEFT):
        crop = crops[i]
        assert (crop[0, 0, 0], crop[1, 0, 0]) == (top, left), f"crop {i}"
        assert (crop[0, -1, -1], crop[1, -1, -1]) == (top + 223, left + 223), f"crop {i}"
        np.testing.assert_array_equal(crop, chw[:, top : top + 224, left : left + 224])
        # crops 5..9 are the horizontal mirrors of 0..4: same rows, columns reversed
        np.testing.assert_array_equal(crops[i + 5], crop[:, :, ::-1])
        assert crops[i + 5][1, 0, 0] == left + 223 and crops[i + 5][0, 0, 0] == top


def test_center_crop_is_crop_four_with_a_mean_image() -> None:
    # the centre crop normalises only its patch; with a per-pixel mean and a scale it must give
    # exactly the floats of crop 4 of the ten (which normalise the whole square)
    rng = np.random.default_rng(0)
    pre = Preprocessor(mean=rng.uniform(0, 2, (256, 256, 3)), scale=1 / 64)
    square = rng.integers(0, 256, (256, 256, 3), dtype=np.uint8)
    center = pre.crops_from_square(square, "center")
    assert center.shape == (1, 3, 224, 224) and center.dtype == np.float32 and center.flags["C_CONTIGUOUS"]
    np.testing.assert_array_equal(center[0], pre.crops_from_square(square, "ten_crop")[4])


def test_ten_crop_rejects_non_square() -> None:
    with pytest.raises(ValueError, match="square"):
        ten_crop(np.zeros((3, 256, 300), np.float32), 224)


def test_preprocessor_crops_end_to_end_keep_positions() -> None:
    # A lossless 256x256 PNG: no resampling happens, so crop pixel values are exact positions.
    pre = Preprocessor(mean=np.zeros(3))
    data = encode(position_image(256), "PNG")
    ten = pre.crops(data)
    assert ten.shape == (10, 3, 224, 224) and ten.dtype == np.float32
    for i, (top, left) in enumerate(EXPECTED_TOP_LEFT):
        assert (ten[i, 0, 0, 0], ten[i, 1, 0, 0]) == (top, left)
        np.testing.assert_array_equal(ten[i + 5], ten[i][:, :, ::-1])
    center = pre.crops(data, tta="center")
    np.testing.assert_array_equal(center[0], ten[4])
    with pytest.raises(ValueError, match="tta"):
        pre.crops(data, tta="five_crop")  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------
# Resize + centre crop


def gradient_image(width: int, height: int) -> Image.Image:
    """Red encodes the row, green the column, both scaled to 0..255 over the whole image."""
    rows, cols = np.indices((height, width), dtype=np.float64)
    red = np.round(rows / max(height - 1, 1) * 255)
    green = np.round(cols / max(width - 1, 1) * 255)
    return Image.fromarray(np.stack([red, green, np.zeros_like(red)], axis=-1).astype(np.uint8), "RGB")


def test_resize_center_crop_landscape_takes_the_centre() -> None:
    square = resize_center_crop(gradient_image(512, 256))  # shorter side already 256: no rescale
    assert square.shape == (256, 256, 3) and square.dtype == np.uint8
    # columns 128..383 of 512 -> green 128/511*255 ~ 64 .. 383/511*255 ~ 191
    assert square[:, 0, 1].tolist() == [64] * 256
    assert square[:, -1, 1].tolist() == [191] * 256
    assert square[0, :, 0].tolist() == [0] * 256 and square[-1, :, 0].tolist() == [255] * 256


def test_resize_center_crop_portrait_rescales_and_takes_the_centre() -> None:
    square = resize_center_crop(gradient_image(300, 600))  # -> 256 x 512, rows 128..383 kept
    assert square.shape == (256, 256, 3)
    assert abs(int(square[0, 128, 0]) - 64) <= 2
    assert abs(int(square[-1, 128, 0]) - 191) <= 2
    assert abs(int(square[128, 0, 1]) - 0) <= 2 and abs(int(square[128, -1, 1]) - 255) <= 2


def test_resize_center_crop_upscales_tiny_images() -> None:
    tiny = Image.new("RGB", (20, 10), (255, 0, 0))
    tiny.paste((0, 0, 255), (10, 0, 20, 10))  # left half red, right half blue
    square = resize_center_crop(tiny)  # -> 512 x 256, the middle 256 columns: red | blue at 128
    assert square.shape == (256, 256, 3)
    assert tuple(square[128, 60]) == (255, 0, 0)
    assert tuple(square[128, 196]) == (0, 0, 255)
    assert tuple(square[5, 5]) == (255, 0, 0) and tuple(square[250, 250]) == (0, 0, 255)


@pytest.mark.parametrize("size", [(640, 480), (300, 200), (192, 128), (397, 137), (287, 335), (256, 900), (4, 3)])
def test_resize_center_crop_resamples_only_the_square_as_rescaling_all_would(size: tuple[int, int]) -> None:
    """The definition: rescale the whole image (shorter side 256), then cut out the central square.
    Resampling only the square must give the same pixels but for rounding (noise: the worst case)."""
    noise = Image.fromarray(np.random.default_rng(sum(size)).integers(0, 256, (size[1], size[0], 3), np.uint8))
    width, height = size
    new_w, new_h = max(256, round(width * 256 / min(size))), max(256, round(height * 256 / min(size)))
    whole = noise.resize((new_w, new_h), Image.Resampling.BILINEAR)
    left, top = (new_w - 256) // 2, (new_h - 256) // 2
    reference = np.asarray(whole.crop((left, top, left + 256, top + 256)), dtype=np.int16)
    assert np.abs(resize_center_crop(noise).astype(np.int16) - reference).max() <= 1


@pytest.mark.parametrize("size", [(256, 256), (257, 1000), (1000, 257), (1, 1), (3, 700)])
def test_resize_center_crop_shape(size: tuple[int, int]) -> None:
    assert resize_center_crop(Image.new("RGB", size, (1, 2, 3))).shape == (256, 256, 3)


# ---------------------------------------------------------------------------------------------
# Mean subtraction and scale


def test_per_channel_mean_is_subtracted() -> None:
    pre = Preprocessor(mean=np.array([10.0, 20.0, 30.0]))
    square = np.full((256, 256, 3), 100, np.uint8)
    chw = pre.normalize(square)
    assert chw.shape == (3, 256, 256) and chw.dtype == np.float32
    assert [float(v) for v in np.unique(chw[0])] == [90.0]
    assert [float(v) for v in np.unique(chw[1])] == [80.0]
    assert [float(v) for v in np.unique(chw[2])] == [70.0]


def test_mean_image_is_subtracted_pixelwise() -> None:
    rng = np.random.default_rng(0)
    mean = rng.uniform(0, 255, size=(256, 256, 3)).astype(np.float32)
    pre = Preprocessor(mean=mean)
    square = rng.integers(0, 256, size=(256, 256, 3), dtype=np.uint8)
    expected = (square.astype(np.float32) - mean).transpose(2, 0, 1)
    np.testing.assert_array_equal(pre.normalize(square), expected)
    crops = pre.crops_from_square(square, "ten_crop")
    np.testing.assert_array_equal(crops[3], expected[:, 32:, 32:])  # bottom-right crop


def test_scale_applies_before_the_mean() -> None:
    pre = Preprocessor(mean=np.array([0.5, 0.5, 0.5]), scale=1 / 255)
    chw = pre.normalize(np.full((256, 256, 3), 255, np.uint8))
    np.testing.assert_allclose(chw, 0.5, rtol=1e-6)


@pytest.mark.parametrize("shape", [(4,), (224, 224, 3), (3, 256, 256), (1, 3)])
def test_bad_mean_shape_is_refused(shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match="mean"):
        Preprocessor(mean=np.zeros(shape))


def test_crop_larger_than_resize_is_refused() -> None:
    with pytest.raises(ValueError, match="crop"):
        Preprocessor(mean=np.zeros(3), crop=300)


# ---------------------------------------------------------------------------------------------
# Decoding


def test_decode_rgb_jpeg_from_bytes_path_file_and_image(tmp_path) -> None:
    img = Image.new("RGB", (40, 30), (200, 100, 50))
    data = encode(img, "JPEG", quality=95)
    path = tmp_path / "a.jpg"
    path.write_bytes(data)
    for source in (data, path, str(path), io.BytesIO(data), img):
        out = decode_image(source)
        assert out.mode == "RGB" and out.size == (40, 30)
        assert np.abs(np.asarray(out, np.int16)[15, 20] - (200, 100, 50)).max() <= 3


def test_grayscale_jpeg_becomes_rgb() -> None:
    out = decode_image(encode(Image.new("L", (16, 8), 77), "JPEG"))
    assert out.mode == "RGB" and out.size == (16, 8)
    arr = np.asarray(out)
    assert np.array_equal(arr[..., 0], arr[..., 1]) and np.array_equal(arr[..., 1], arr[..., 2])
    assert abs(int(arr[4, 8, 0]) - 77) <= 2


def test_cmyk_jpeg_becomes_rgb() -> None:
    data = encode(Image.new("CMYK", (8, 8), (0, 255, 255, 0)), "JPEG", quality=95)  # no cyan/black: red
    assert Image.open(io.BytesIO(data)).mode == "CMYK"
    out = decode_image(data)
    assert out.mode == "RGB"
    r, g, b = (int(v) for v in out.getpixel((4, 4)))
    assert r > 240 and g < 15 and b < 15


def test_16bit_png_keeps_relative_brightness() -> None:
    values = np.array([[65535, 32768], [0, 16384]], dtype=np.uint16)
    data = encode(Image.fromarray(values), "PNG")
    assert Image.open(io.BytesIO(data)).mode == "I;16"
    out = decode_image(data)
    assert out.mode == "RGB"
    gray = np.asarray(out)[..., 0]
    assert gray[0, 0] == 255 and gray[1, 0] == 0
    assert abs(int(gray[0, 1]) - 128) <= 1 and abs(int(gray[1, 1]) - 64) <= 1


def test_dark_16bit_png_is_not_mistaken_for_8bit() -> None:
    # Every value <= 255 in a 16-bit image is nearly black, not full brightness.
    data = encode(Image.fromarray(np.full((4, 4), 255, np.uint16)), "PNG")
    assert np.asarray(decode_image(data)).max() <= 1


def test_paletted_png_with_transparency_is_composited_on_white() -> None:
    img = Image.new("P", (4, 4), 0)
    img.putpalette([255, 0, 0, 0, 0, 255] + [0] * (256 * 3 - 6))  # index 0 red, 1 blue
    img.putpixel((0, 0), 1)
    data = encode(img, "PNG", transparency=0)  # index 0 (red) is fully transparent
    out = decode_image(data)
    assert out.mode == "RGB"
    assert out.getpixel((0, 0)) == (0, 0, 255)
    assert out.getpixel((2, 2)) == (255, 255, 255)


def test_rgba_png_is_composited_on_white() -> None:
    img = Image.new("RGBA", (3, 1))
    img.putdata([(255, 0, 0, 255), (0, 0, 0, 0), (0, 0, 0, 128)])
    out = decode_image(encode(img, "PNG"))
    assert out.mode == "RGB"
    assert out.getpixel((0, 0)) == (255, 0, 0)
    assert out.getpixel((1, 0)) == (255, 255, 255)
    assert all(abs(v - 127) <= 1 for v in out.getpixel((2, 0)))  # half black over white


def test_exif_orientation_is_applied() -> None:
    img = Image.new("RGB", (40, 20), (255, 255, 255))
    img.paste((255, 0, 0), (0, 0, 10, 20))  # red on the stored image's left
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    data = encode(img, "JPEG", exif=exif.tobytes(), quality=95)
    assert Image.open(io.BytesIO(data)).size == (40, 20)
    out = decode_image(data)
    assert out.size == (20, 40)
    # rotated 90 degrees clockwise, the stored left edge becomes the top
    r, g, b = (int(v) for v in out.getpixel((10, 2)))
    assert r > 200 and g < 60 and b < 60
    assert min(int(v) for v in out.getpixel((10, 37))) > 200


def test_jpeg_draft_decodes_large_photos_smaller_and_nearly_the_same() -> None:
    photo = Image.open(CALTECH_SAMPLES[0]).convert("RGB").resize((2400, 1800), Image.Resampling.BICUBIC)
    data = encode(photo, "JPEG", quality=90)
    assert decode_image(data).size == (2400, 1800)
    drafted = decode_image(data, draft_min_side=256)
    assert drafted.size == (600, 450)  # 1/4 scale: the smallest libjpeg scale that keeps both sides >= 256
    full = resize_center_crop(decode_image(data), 256).astype(np.int16)
    fast = resize_center_crop(drafted, 256).astype(np.int16)
    assert np.abs(full - fast).mean() < 2.0  # of 255: a re-sampling difference, not a different picture
    pre = Preprocessor(mean=np.zeros(3, np.float32), jpeg_draft=True)
    np.testing.assert_array_equal(pre.square(data), fast.astype(np.uint8))


def test_prepare_gives_the_crops_the_upright_full_size_and_a_thumbnail() -> None:
    """One decode: the crops of ``crops``, the stored image's upright size (also when JPEG draft
    decoded it smaller) and, only when asked, the gallery thumbnail."""
    photo = Image.open(CALTECH_SAMPLES[0]).convert("RGB").resize((1200, 800), Image.Resampling.BICUBIC)
    exif = Image.Exif()
    exif[0x0112] = 6  # stored landscape, shown portrait
    data = encode(photo, "JPEG", quality=90, exif=exif)
    pre = Preprocessor(mean=np.array([120.0, 115.0, 100.0], np.float32), jpeg_draft=True)
    prepared = pre.prepare(data, "center")
    np.testing.assert_array_equal(prepared.crops, pre.crops(data, "center"))
    assert (prepared.width, prepared.height) == (800, 1200) and prepared.thumbnail is None
    thumb = Image.open(io.BytesIO(pre.prepare(data, "ten_crop", thumbnail=True).thumbnail or b""))
    assert thumb.format == "JPEG" and thumb.size == (64, 96)  # longest side 96, upright


def test_jpeg_draft_leaves_small_images_and_other_formats_alone() -> None:
    small = CALTECH_SAMPLES[0].read_bytes()  # about 300x200: under twice 256
    assert decode_image(small, draft_min_side=256).tobytes() == decode_image(small).tobytes()
    png = encode(Image.new("RGB", (1200, 900), (10, 200, 30)), "PNG")
    assert decode_image(png, draft_min_side=256).size == (1200, 900)


def test_animated_gif_uses_the_first_frame() -> None:
    palette = [255, 0, 0, 0, 255, 0, 0, 0, 255] + [0] * (256 * 3 - 9)
    frames = []
    for index in range(3):
        frame = Image.new("P", (6, 6), index)
        frame.putpalette(palette)
        frames.append(frame)
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=50, loop=0)
    assert Image.open(io.BytesIO(data)).n_frames == 3
    out = decode_image(data)
    assert out.mode == "RGB" and out.size == (6, 6)
    assert out.getpixel((3, 3)) == (255, 0, 0)


def test_truncated_jpeg_is_an_image_error() -> None:
    data = CALTECH_SAMPLES[0].read_bytes()
    with pytest.raises(ImageError, match="truncated or corrupt"):
        decode_image(data[: len(data) // 2])


@pytest.mark.parametrize(
    ("data", "message"),
    [(b"", "empty"), (b"this is plainly not an image", "not a recognised"), (b"\x89PNG\r\n\x1a\n", None)],
    ids=["empty", "text", "png-signature-only"],
)
def test_bad_bytes_are_image_errors(data: bytes, message: str | None) -> None:
    with pytest.raises(ImageError, match=message):
        decode_image(data)


@pytest.mark.parametrize("size", [(8_000, 8_000), (100_000, 100_000)], ids=["over-our-limit", "over-pillows-limit"])
def test_declared_size_over_limit_is_refused_before_decoding(size: tuple[int, int]) -> None:
    # The file holds no pixel data at all: decoding it would fail with a plain ImageError, so a
    # too-large error proves the declared size was checked first.
    data = png_declaring(*size)
    assert len(data) < 100
    with pytest.raises(ImageTooLargeError):
        decode_image(data)
    with pytest.raises(ImageError) as info:
        decode_image(png_declaring(10, 10))
    assert not isinstance(info.value, ImageTooLargeError)


def test_max_pixels_limit_on_a_real_png() -> None:
    data = encode(Image.new("RGB", (100, 100), (1, 2, 3)), "PNG")
    with pytest.raises(ImageTooLargeError, match="10000"):
        decode_image(data, max_pixels=9_999)
    assert decode_image(data, max_pixels=10_000).size == (100, 100)
    with pytest.raises(ImageTooLargeError):
        Preprocessor(mean=np.zeros(3), max_pixels=5_000).crops(data)


def test_real_caltech_grayscale_image_loads() -> None:
    with Image.open(CALTECH_GRAYSCALE) as raw:
        assert raw.mode == "L"
        raw_size = raw.size
    out = decode_image(CALTECH_GRAYSCALE.read_bytes())
    assert out.mode == "RGB" and out.size == raw_size
    crops = Preprocessor(mean=np.array([120.0, 115.0, 100.0])).crops(CALTECH_GRAYSCALE)
    assert crops.shape == (10, 3, 224, 224)
    # gray replicated over the three channels: the channel differences are just the mean's
    np.testing.assert_allclose(crops[:, 0] - crops[:, 1], -5.0, atol=1e-4)
    np.testing.assert_allclose(crops[:, 1] - crops[:, 2], -15.0, atol=1e-4)


# ---------------------------------------------------------------------------------------------
# Softmax and the 10-crop average


def test_softmax_rows_sum_to_one_and_are_stable() -> None:
    logits = np.array([[1000.0, 1001.0, 999.0], [0.0, 0.0, 0.0], [-1e4, 0.0, 1e4]])
    probs = softmax(logits)
    assert np.isfinite(probs).all()
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-12)
    e = np.exp([-1.0, 0.0, -2.0])
    np.testing.assert_allclose(probs[0], np.array([e[0], e[1], e[2]]) / e.sum(), rtol=1e-12)
    np.testing.assert_allclose(probs[1], 1 / 3)
    np.testing.assert_allclose(probs[2], [0.0, 0.0, 1.0])


def test_average_crop_probabilities_is_the_mean_of_softmaxes() -> None:
    rng = np.random.default_rng(1)
    logits = rng.normal(0, 3, size=(2 * 10, 7)).astype(np.float32)
    avg = average_crop_probabilities(logits, 10)
    assert avg.shape == (2, 7)
    np.testing.assert_allclose(avg.sum(axis=1), 1.0, rtol=1e-12)
    for image in range(2):
        rows = logits[image * 10 : (image + 1) * 10].astype(np.float64)
        manual = np.exp(rows) / np.exp(rows).sum(axis=1, keepdims=True)
        np.testing.assert_allclose(avg[image], manual.mean(axis=0), rtol=1e-10)
    # not the softmax of the mean logits (the paper averages probabilities)
    assert not np.allclose(avg[0], softmax(logits[:10].astype(np.float64).mean(axis=0)), rtol=1e-3)
    np.testing.assert_allclose(average_crop_probabilities(logits[:1], 1)[0], softmax(logits[0].astype(np.float64)))
