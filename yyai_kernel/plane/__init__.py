"""The data plane: every operation a front end offers, once, with no framework types.

- ``dataplane.py``: DataPlane, reading and inference;
- ``management.py``: ManagedPlane, the changes (management, labels, traffic) as operations;
- ``operations.py``: management calls as values, led by one worker and followed by the others;
- ``explanations.py``: the bounded ``?explain=`` step (Grad-CAM for images, integrated gradients for tables);
- ``backend.py``: the Backend Protocol the dashboard calls (DataPlane or YyaiClient).
"""
