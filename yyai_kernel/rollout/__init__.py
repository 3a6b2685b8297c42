"""Rollouts: placing requests that name no version (canary, shadow) and measuring them.

The policy types live in ``yyai_kernel.types.rollout``; here is what acts on them.

- ``traffic.py``: TrafficRouter, the plan of each request and the running figures;
- ``shadow.py``: ShadowRunner, shadow runs off the reply's path, gathered and batched;
- ``compare.py``: the row-by-row comparison of a shadow's output with the answer sent.
"""
