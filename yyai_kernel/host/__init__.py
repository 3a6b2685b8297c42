"""The model host: the one process per machine (per GPU) that holds the models, and its IPC.

Under ``yyai serve --workers N`` the front ends (REST, gRPC, the dashboard's server) hold no
models and never import TensorFlow; the model host does, for all of them:

- ``spec.py``: HostSpec, what the supervisor tells a host process (socket, key, settings);
- ``channel.py``: Channel, requests, replies and pushes over a private Unix socket, large
  tensors in shared memory;
- ``service.py``: HostService, the host's side: predictions into the registry's batchers,
  management led once, the models' views pushed to every front end before a change replies;
- ``remote.py``: HostRegistry, a front end's ModelRegistry that reaches the host (each
  model's owner, when there is a host per GPU);
- ``placement.py``: Placement, which host owns each model under ``--devices 0,1``;
- ``main.py``: the host process (``python -m yyai_kernel.host``).

Alone (``yyai serve``) the front end and the registry share one process and none of this runs.
"""
