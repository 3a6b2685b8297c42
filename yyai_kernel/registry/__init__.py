"""The registry: model name -> versions -> the runtime that answers.

- ``protocol.py``: ModelRegistry, the Protocol the data plane is written against, and
  the one version-resolution rule;
- ``registry.py``: Registry, the in-process implementation (predicting, loading on demand,
  managing, labels and traffic, the warm set, following the store);
- ``table.py``: ModelTable, the registry's name map, defaults, store reads and loads;
- ``versions.py``: ModelVersions, one model's version slots, load-before-unload swaps;
- ``defaults.py``: DefaultVersions, which version answers when none is named;
- ``residency.py``: what stays loaded within a budget (LRU, protected last), the load
  gate (one load at a time, by priority), cold-start deadlines;
- ``memory.py``: the process's memory, sampled around each load (a version's real cost).
"""
