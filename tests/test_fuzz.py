"""Fuzzing the archive reader and the image decoder: nothing escapes but the typed errors.

Each test feeds Hypothesis-generated hostile input (see ``fuzz_targets.py``) through the
public entry points and lets any exception that is not the reader's own typed error fail
the test. A short seeded, derandomized run (the ``yyai-fuzz`` profile) is part of
``make test``; ``YYAI_FUZZ=long`` (``make fuzz``) selects the ``yyai-fuzz-long`` profile,
which runs many more random examples within a few minutes in all.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from fuzz_targets import (
    ARCHIVE_BYTES,
    HEADER_FORMATS,
    IMAGE_BYTES,
    LIMITS,
    MANIFEST_INPUTS,
    SEED_ARCHIVES,
    SEED_IMAGES,
    archive_target,
    found_archives,
    found_images,
    huge_header,
    image_target,
    input_specs,
    mutated_bytes,
    reseal,
)
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from yyai_kernel.archive import Manifest
from yyai_kernel.errors import ImageError, ImageTooLargeError, ManifestError
from yyai_kernel.runtime.images import decode_image

settings.register_profile(
    "yyai-fuzz", max_examples=150, derandomize=True, database=None, deadline=None, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)
settings.register_profile("yyai-fuzz-long", settings.get_profile("yyai-fuzz"), max_examples=5000,
                          derandomize=False)
LONG = os.environ.get("YYAI_FUZZ") == "long"
FUZZ = settings.get_profile("yyai-fuzz-long" if LONG else "yyai-fuzz")
# Loading a Keras member costs more than reading a zip: a quarter of the examples.
FUZZ_MODELS = settings(FUZZ, max_examples=FUZZ.max_examples // 4)
PIXEL_LIMITS = st.sampled_from([4096, 1_000_000])


def test_the_seeds_are_valid_inputs():
    """Mutations start from inputs the readers accept, so they reach past the first check."""
    assert [archive_target(seed) for seed in SEED_ARCHIVES] == ["accepted"] * len(SEED_ARCHIVES)
    spec = {"shape": [4, 4, 3], "dtype": "float32", "color": "rgb"}
    assert {image_target(seed, spec, max_pixels=4096) for seed in SEED_IMAGES} == {"accepted"}


@pytest.mark.parametrize("case", sorted(found_archives()))
def test_archives_the_fuzzing_found_get_typed_refusals(case):
    data, refusal = found_archives()[case]
    assert archive_target(data) == refusal


@pytest.mark.parametrize("case", sorted(found_images()))
def test_images_the_fuzzing_found_get_a_result_or_a_typed_refusal(case):
    data, spec, outcome = found_images()[case]
    assert image_target(data, spec, max_pixels=4096) == outcome


def test_float_images_map_0_to_1_onto_0_to_255_clipped():
    data, _, _ = found_images()["float32 TIFF"]
    pixels = decode_image(data)
    assert pixels.dtype == np.uint8 and pixels.min() == 0 and pixels.max() == 255
    assert pixels.ravel().tolist() == sorted(pixels.ravel().tolist())  # monotonic, as the values were


@FUZZ
@given(MANIFEST_INPUTS)
def test_manifest_validation_raises_only_manifest_errors(data):
    try:
        manifest = Manifest.from_dict(data)
    except ManifestError as exc:
        event(type(exc).__name__)
        return
    event("accepted")
    again = Manifest.from_dict(json.loads(manifest.to_json()))  # what pack writes, reads back
    assert json.dumps(again.data, sort_keys=True) == json.dumps(manifest.data, sort_keys=True)


@FUZZ
@given(ARCHIVE_BYTES, LIMITS)
def test_archive_reader_raises_only_archive_errors(data, limits):
    event(archive_target(data, limits=limits))


@pytest.fixture(scope="module")
def model_archives(tmp_path_factory):
    """Real archives with a tiny Keras member: one .keras, one .h5."""
    from builders import pack_models

    root = tmp_path_factory.mktemp("fuzz-models")
    return [pack_models(root, "fz", 1, [1], fmt=fmt)[0].read_bytes() for fmt in ("keras", "h5")]


def test_the_model_seeds_verify(model_archives):
    assert [archive_target(a, load_models=True) for a in model_archives] == ["accepted", "accepted"]


@FUZZ_MODELS
@given(data=st.data())
def test_damaged_model_members_raise_only_archive_errors(model_archives, data):
    """Members damaged after packing, with checksums that match: only Keras loading can tell."""
    archive = data.draw(st.sampled_from(model_archives))

    def damage(member: bytes) -> bytes:
        return data.draw(mutated_bytes([member], max_edits=3))

    event(archive_target(reseal(archive, damage), load_models=True))


@FUZZ
@given(IMAGE_BYTES, input_specs(), PIXEL_LIMITS)
def test_image_decoder_raises_only_image_errors(data, spec, max_pixels):
    event(image_target(data, spec, max_pixels=max_pixels))


@FUZZ
@given(st.sampled_from(HEADER_FORMATS), st.integers(1, 2**31 - 1), st.integers(1, 2**31 - 1), PIXEL_LIMITS)
def test_images_declaring_more_pixels_than_the_limit_are_refused_from_the_header(fmt, width, height, max_pixels):
    if fmt in ("jpeg", "gif"):  # 16-bit dimension fields
        width, height = width % 65535 + 1, height % 65535 + 1
    if fmt == "webp":
        width, height = width % 2**24 + 1, height % 2**24 + 1
    data = huge_header(fmt, width, height)
    if width * height > max_pixels:
        # Pillow reads every one of these headers but WebP's (libwebp wants a frame): refused either way.
        with pytest.raises(ImageError if fmt == "webp" else ImageTooLargeError):
            decode_image(data, max_pixels=max_pixels)
    else:  # the file is a header and little else: refused as truncated, or decoded
        event(image_target(data, {"shape": [4, 4], "dtype": "float32", "color": "grayscale"}, max_pixels=max_pixels))
