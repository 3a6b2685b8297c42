"""One loaded archive and what serves it: the runtime, batching, images, Grad-CAM.

- ``runtime.py``: ArchiveRuntime, one archive's models behind one traced tf.function
  (the TensorFlow 2 form of one graph/session pair per model);
- ``batching.py``: DynamicBatcher, concurrent requests stacked into one call;
- ``images.py``: decode (pixel limit checked from the header) and preprocess per manifest;
- ``gradcam.py``: Grad-CAM per member, traced beside the serving function;
- ``membermap.py``: one member's Grad-CAM maps, readable without TensorFlow;
- ``prime.py``: TensorFlow started once per process (imports, GPUs, a primer load, gc.freeze);
- ``devices.py``: the GPUs set up before first use (memory growth, or a fixed share).
"""
