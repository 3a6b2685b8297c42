"""Image decoding and preprocessing follow the manifest: colour order, size, scale, limits."""

import struct
import zlib

import cv2
import numpy as np
import pytest

from yyai_kernel.errors import ImageError, ImageTooLargeError
from yyai_kernel.runtime.images import decode_image, encode_png, model_view, preprocess
from yyai_kernel.types import InputSpec

RGB = {"shape": [4, 4, 3], "dtype": "float32", "color": "rgb", "scale": 1 / 255, "offset": 0.0}
GRAY = {"shape": [8, 8, 1], "dtype": "float32", "color": "grayscale", "scale": 1.0, "offset": 0.0}
RGB_SPEC, BGR_SPEC = InputSpec.from_json(RGB), InputSpec.from_json(dict(RGB, color="bgr"))
GRAY_SPEC = InputSpec.from_json(GRAY)


def png_bytes(bgr: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", bgr)
    assert ok
    return buf.tobytes()


def pure_red_png(size=4) -> bytes:
    image = np.zeros((size, size, 3), np.uint8)
    image[:, :, 2] = 255  # OpenCV is BGR: channel 2 is red
    return png_bytes(image)


def png_declaring(width: int, height: int) -> bytes:
    """A tiny valid-looking PNG whose header claims ``width x height`` pixels."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
            + chunk(b"IEND", b""))


def test_rgb_model_gets_red_in_channel_zero():
    x = preprocess(pure_red_png(), RGB_SPEC)
    assert x.shape == (4, 4, 3) and x.dtype == np.float32
    np.testing.assert_allclose(x[..., 0], 1.0)
    np.testing.assert_allclose(x[..., 1:], 0.0)


def test_bgr_model_gets_red_in_channel_two():
    x = preprocess(pure_red_png(), BGR_SPEC)
    np.testing.assert_allclose(x[..., 2], 1.0)
    np.testing.assert_allclose(x[..., :2], 0.0)


def test_resize_and_grayscale_and_scale():
    image = np.full((32, 16, 3), 200, np.uint8)
    x = preprocess(png_bytes(image), GRAY_SPEC)
    assert x.shape == (8, 8, 1)
    np.testing.assert_allclose(x, 200.0)


def test_offset_is_applied_after_scale():
    spec = InputSpec.from_json(dict(GRAY, scale=2.0, offset=-1.0))
    x = preprocess(png_bytes(np.full((8, 8), 3, np.uint8)), spec)
    np.testing.assert_allclose(x, 5.0)


def test_model_view_is_displayable_rgb():
    view = model_view(pure_red_png(16), RGB_SPEC)
    assert view.shape == (4, 4, 3) and view.dtype == np.uint8
    assert (view[..., 0] == 255).all()
    decoded = decode_image(encode_png(view))
    assert (decoded[..., 2] == 255).all()  # round trip through PNG keeps red red


def test_huge_declared_dimensions_refused_before_decoding():
    with pytest.raises(ImageTooLargeError, match="limit"):
        decode_image(png_declaring(50_000, 50_000), max_pixels=1_000_000)


def test_configurable_pixel_limit():
    data = png_bytes(np.zeros((100, 100), np.uint8))
    with pytest.raises(ImageTooLargeError):
        decode_image(data, max_pixels=9_999)
    assert decode_image(data, max_pixels=10_000).shape == (100, 100)


@pytest.mark.parametrize(
    "data",
    [b"", b"not an image at all", pure_red_png()[:30]],
    ids=["empty", "text", "truncated-png"],
)
def test_bad_bytes_are_typed_errors(data):
    with pytest.raises(ImageError):
        decode_image(data)


def test_truncated_jpeg_is_an_error_or_decodes_partially_never_crashes():
    _, buf = cv2.imencode(".jpg", np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8))
    truncated = buf.tobytes()[:100]
    with pytest.raises(ImageError):
        decode_image(truncated)
