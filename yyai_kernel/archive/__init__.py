"""The .yyar archive format: write, read and verify model archives safely.

- ``manifest.py``: the manifest, its schema and rules, the format constants;
- ``reader.py``: reading a zip as hostile input (names, links, sizes, ratios, checksums);
- ``verify.py``: every check, plus loading each member with Keras to prove it fits;
- ``pack.py``: writing an archive from model files; ``packmodel.py`` from in-memory models;
- ``kerasload.py``: loading one member, including the `.h5` files of Keras 2.0-2.2.

Nothing here imports Keras or TensorFlow at import time: ``kerasload`` is imported inside
``verify`` and ``pack`` only. The public functions are re-exported here.
"""

from yyai_kernel.archive.manifest import (
    FORMAT,
    FORMAT_VERSION,
    MANIFEST_NAME,
    SUFFIX,
    Limits,
    Manifest,
    MiB,
)
from yyai_kernel.archive.pack import (
    member_name_for,
    pack,
)
from yyai_kernel.archive.reader import (
    OpenedArchive,
    check_entry_name,
    copy_capped,
    fsync_dir,
    open_archive,
    open_checked_zip,
    read_listed_file,
    read_manifest,
    read_zip_entry,
    sha256_file,
)
from yyai_kernel.archive.verify import (
    VerifyReport,
    check_model_fits,
    verify,
)

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "MANIFEST_NAME",
    "SUFFIX",
    "Limits",
    "Manifest",
    "MiB",
    "OpenedArchive",
    "VerifyReport",
    "check_entry_name",
    "check_model_fits",
    "copy_capped",
    "fsync_dir",
    "member_name_for",
    "open_archive",
    "open_checked_zip",
    "pack",
    "read_listed_file",
    "read_manifest",
    "read_zip_entry",
    "sha256_file",
    "verify",
]
