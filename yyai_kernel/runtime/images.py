"""Decode and preprocess images exactly as an archive's manifest says.

Images arrive as bytes from clients that may be hostile, so the pixel count is checked
from the file header (Pillow reads headers lazily) before OpenCV decodes anything: a
100-byte PNG may declare 100,000 x 100,000 pixels. OpenCV decodes colour images in BGR
order; the manifest's ``input.color`` says which order the model was trained on, and the
conversion happens here, once, for every caller (the original service mixed Keras's RGB
loader with cv2's BGR one and served subtly wrong predictions).
"""

from __future__ import annotations

import io
import warnings

import cv2
import numpy as np
from PIL import Image

from yyai_kernel.config import DEFAULT_MAX_PIXELS
from yyai_kernel.errors import ImageError, ImageTooLargeError
from yyai_kernel.types.specs import Color, ImageSpec, InputKind, InputSpec


def image_size(data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[int, int]:
    """Return (width, height) read from the image header, without decoding pixels."""
    if not data:
        raise ImageError("The image is empty: the request carried no bytes.")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(data)) as img:
                return img.size
    except Image.DecompressionBombError:
        # Pillow's own bomb guard fires on sizes far past ours; report it the same way.
        raise ImageTooLargeError(
            f"The image declares far more pixels than the limit of {max_pixels:,}."
        ) from None
    except Exception:  # noqa: BLE001 - whatever the decoder raises, the bytes are no image
        raise ImageError(
            "This is not an image yyai can read (PNG, JPEG, BMP, TIFF, WebP are accepted)."
        ) from None


def decode_image(data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode bytes into an OpenCV image (BGR ``HxWx3`` or gray ``HxW``, uint8).

    Raises ImageTooLargeError when the header declares more than ``max_pixels`` pixels,
    and ImageError when the bytes are not a complete, decodable image.
    """
    width, height = image_size(data, max_pixels=max_pixels)
    if width * height > max_pixels:
        raise ImageTooLargeError(
            f"The image is {width}x{height} = {width * height:,} pixels; "
            f"the limit is {max_pixels:,}."
        )
    buffer = np.frombuffer(data, dtype=np.uint8)
    image = cv2.imdecode(buffer, cv2.IMREAD_UNCHANGED)
    if image is None or image.size == 0:
        raise ImageError("The image could not be decoded: it is truncated or corrupt.")
    if image.dtype != np.uint8:  # 16-bit or signed PNG/TIFF/PGM, or float TIFF: down to 8 bits
        image = _to_uint8(image)
    if image.ndim == 3 and image.shape[2] == 4:
        image = cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    return image


def _to_uint8(image: np.ndarray) -> np.ndarray:
    """Map integer pixels by their type's maximum, float pixels from 0..1 (NaN as 0), to uint8."""
    if np.issubdtype(image.dtype, np.integer):
        scaled = image.astype(np.float64) / np.iinfo(image.dtype).max * 255
    else:
        scaled = np.nan_to_num(image.astype(np.float64), nan=0.0, posinf=1.0, neginf=0.0) * 255
    return np.clip(scaled, 0, 255).round().astype(np.uint8)


def _image_of(input_spec: InputSpec) -> tuple[ImageSpec, tuple[int, int, int]]:
    """The image part of an input spec and its (height, width, channels); ImageError for a non-image input."""
    grid = input_spec.image_grid()
    if input_spec.image is None or grid is None:
        takes = {InputKind.TABLE: "a table of named features", InputKind.SEVERAL: "several named inputs"}.get(
            input_spec.kind, f"input of shape {list(input_spec.shape)}")
        raise ImageError(
            f"This model takes {takes}, not an image; send JSON records or numbers (Content-Type "
            "application/json), a CSV (text/csv) or a .npy (application/x-npy) instead."
        )
    return input_spec.image, grid


def _to_model_pixels(image: np.ndarray, input_spec: InputSpec) -> np.ndarray:
    """Convert a decoded image to the model's colour order and size, still uint8, as HxWxC."""
    spec, (height, width, channels) = _image_of(input_spec)  # pixels are worked on as HxWxC; preprocess transposes
    if channels == 1 or spec.color is Color.GRAYSCALE:
        if image.ndim == 3:
            image = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    else:
        if image.ndim == 2:
            image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
        if spec.color is Color.RGB:
            image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    if image.shape[:2] != (height, width):
        shrinking = image.shape[0] > height or image.shape[1] > width
        interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
        image = cv2.resize(image, (width, height), interpolation=interpolation)
    if image.ndim == 2:
        image = image[:, :, None]
    return image


def preprocess(data: bytes, input_spec: InputSpec, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Turn image bytes into one model input of ``input_spec.shape``: decode, colour, resize, scale, cast."""
    pixels = _to_model_pixels(decode_image(data, max_pixels=max_pixels), input_spec)
    spec, _ = _image_of(input_spec)
    if spec.channels_first and len(input_spec.shape) == 3:
        pixels = pixels.transpose(2, 0, 1)
    scaled = pixels.astype(np.float32) * float(spec.scale) + float(spec.offset)
    return scaled.reshape(input_spec.shape).astype(input_spec.dtype)


def preprocess_batch(images: list[bytes], input_spec: InputSpec, *, max_pixels: int = DEFAULT_MAX_PIXELS,
                     names: list[str | None] | None = None) -> np.ndarray:
    """Several images as one batch ``[B, *shape]``; an image that cannot be read is named in
    the ImageError (its file name from ``names``, else its place: "image 2 of 3")."""
    rows = []
    for i, data in enumerate(images):
        try:
            rows.append(preprocess(data, input_spec, max_pixels=max_pixels))
        except ImageError as error:
            name = names[i] if names and i < len(names) and names[i] else None
            if name is None and len(images) == 1:
                raise
            where = repr(name) if name else f"image {i + 1} of {len(images)}"
            raise type(error)(f"{where}: {error.message}", field=error.field, hint=error.hints) from None
    return np.stack(rows)


def model_view(data: bytes, input_spec: InputSpec, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """The image as the model sees it, as RGB (or gray) uint8 for display.

    Resized and colour-converted like ``preprocess``; a BGR model's input is shown with its
    channels as the model receives them, mapped to RGB so that a wrong colour order shows.
    """
    pixels = _to_model_pixels(decode_image(data, max_pixels=max_pixels), input_spec)
    if pixels.shape[2] == 1:
        return pixels[:, :, 0]
    return pixels  # rgb models: already RGB; bgr models: their channel order displayed as-is


def encode_png(image: np.ndarray, *, rgb: bool = True) -> bytes:
    """Encode a uint8 image as PNG bytes (RGB input by default)."""
    if image.ndim == 3 and rgb:
        image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    ok, buffer = cv2.imencode(".png", image)
    if not ok:  # pragma: no cover - OpenCV only fails on invalid arrays
        raise ImageError("Could not encode the image as PNG.")
    return buffer.tobytes()


def thumbnail_png(x: np.ndarray, input_spec: InputSpec, *, size: int = 64) -> bytes | None:
    """A model input turned back into pixels (``pixel = (x - offset) / scale``), as a PNG
    whose longer side is ``size``; None for inputs that are not images.

    Used to show the inputs on which two versions disagreed: small images (8x8 digits)
    are enlarged with nearest-neighbour so their pixels stay visible.
    """
    spec = input_spec.image
    if spec is None or spec.scale == 0 or input_spec.image_grid() is None or x.shape != input_spec.shape:
        return None
    pixels = (np.asarray(x, dtype=np.float64) - float(spec.offset)) / float(spec.scale)
    if pixels.ndim == 3 and spec.channels_first:
        pixels = pixels.transpose(1, 2, 0)
    if pixels.ndim == 3 and pixels.shape[2] == 1:
        pixels = pixels[:, :, 0]
    if pixels.ndim == 3 and pixels.shape[2] != 3:
        return None
    image: np.ndarray = np.clip(np.nan_to_num(pixels), 0, 255).round().astype(np.uint8)
    height, width = image.shape[:2]
    factor = size / max(height, width)
    interpolation = cv2.INTER_NEAREST if factor >= 1 else cv2.INTER_AREA
    image = cv2.resize(image, (max(1, round(width * factor)), max(1, round(height * factor))),
                       interpolation=interpolation)
    return encode_png(image, rgb=spec.color is not Color.BGR)


OVERLAY_MIN_SIDE = 144  # an overlay of a smaller input is drawn larger, so that the map reads
OVERLAY_ALPHA = 0.4  # the heat map's weight over the image, as in the Keras Grad-CAM recipe


def heatmap_overlay(view: np.ndarray, heatmap: np.ndarray) -> bytes:
    """A heat map (``[h, w]`` in 0..1) drawn over an image as the model sees it, as PNG bytes.

    The Keras Grad-CAM recipe's picture: the map resized to the image, coloured with the
    jet colour map and laid over it at ``OVERLAY_ALPHA``. An image smaller than
    ``OVERLAY_MIN_SIDE`` is first enlarged with square pixels, so that the map shows.
    """
    image = view if view.ndim == 3 else cv2.cvtColor(view, cv2.COLOR_GRAY2RGB)
    height, width = image.shape[:2]
    scale = max(1, int(np.ceil(OVERLAY_MIN_SIDE / max(height, width))))
    size = (width * scale, height * scale)
    image = cv2.resize(image, size, interpolation=cv2.INTER_NEAREST)
    heat = cv2.resize(np.clip(heatmap, 0, 1).astype(np.float32), size, interpolation=cv2.INTER_LINEAR)
    jet = cv2.applyColorMap(np.round(heat * 255).astype(np.uint8), cv2.COLORMAP_JET)  # BGR
    blended = cv2.addWeighted(cv2.cvtColor(image, cv2.COLOR_RGB2BGR), 1 - OVERLAY_ALPHA, jet, OVERLAY_ALPHA, 0)
    return encode_png(blended, rgb=False)
