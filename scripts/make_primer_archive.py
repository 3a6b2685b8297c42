"""Write ``yyai_kernel/runtime/primer.yyar``: the tiny archive every server loads once before its models.

Why: the first archive a process loads pays for what TensorFlow and Keras set up lazily
(``yyai_kernel/runtime/prime.py``). A server loads this archive first, so that the first real
version's measured cost is its own. Building it at start (saving Keras models, packing,
verifying) cost more than loading it, so it is built once, here, and shipped. Its members
use the layers most image models use (convolution, pooling, batch normalization, dropout,
dense, softmax), on a small grayscale input, combined by mean, as the demo archives are.

    python scripts/make_primer_archive.py      # rewrites yyai_kernel/runtime/primer.yyar
"""

from __future__ import annotations

import tempfile
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "yyai_kernel" / "runtime" / "primer.yyar"


def main() -> None:
    import keras

    from yyai_kernel.archive.packmodel import pack_model

    keras.utils.set_random_seed(0)
    layers = keras.layers
    conv = keras.Sequential([keras.Input((8, 8, 1)), layers.Conv2D(4, 3, padding="same", activation="relu"),
                             layers.BatchNormalization(), layers.MaxPooling2D(), layers.Dropout(0.1),
                             layers.GlobalAveragePooling2D(), layers.Dense(2, activation="softmax")], name="conv")
    dense = keras.Sequential([keras.Input((8, 8, 1)), layers.Flatten(), layers.Dense(4, activation="relu"),
                              layers.Dense(2, activation="softmax")], name="dense")
    with tempfile.TemporaryDirectory() as folder:
        path = pack_model([conv, dense], name="primer", version=1, input={"scale": 1 / 255}, labels=["a", "b"],
                          out=folder, description="Loaded once before a server's models (runtime/prime.py).")
        OUT.write_bytes(Path(path).read_bytes())
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
