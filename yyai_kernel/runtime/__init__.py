"""One loaded archive and what serves it: the runtime, batching, inputs, explanations.

- ``runtime.py``: ArchiveRuntime, one archive's models behind one traced tf.function
  (the TensorFlow 2 form of one graph/session pair per model);
- ``feed.py``: how the runtime's one input array reaches models with several inputs;
- ``batching.py``: DynamicBatcher, concurrent requests stacked into one call;
- ``handoff.py``: hand-offs between threads gathered (requests to a batcher, answers to an
  event loop or a channel), one wake-up per batch each way;
- ``images.py``: decode (pixel limit checked from the header) and preprocess per manifest;
- ``tabular.py``: records (JSON, CSV rows) and numbers fitted to a table's or a tensor's input;
- ``gradcam.py``: Grad-CAM per member, traced beside the serving function;
- ``attributions.py``: integrated gradients per member, for tables;
- ``membermap.py``: what those two give per member (maps, attributions), readable without TensorFlow;
- ``prime.py``: TensorFlow started once per process (imports, GPUs, a primer load, gc.freeze);
- ``devices.py``: the GPUs set up before first use (memory growth, or a fixed share).
"""
