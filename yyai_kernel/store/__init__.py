"""The store: a folder of archives, their versions, and the state persisted beside them.

- ``store.py``: ModelStore, the archives by name and version; atomic writes;
- ``state.py``: StoreState, the pins, labels and traffic policies of ``.yyai-state.json``;
- ``watch.py``: StoreWatcher, polling the folder and its state file.
"""
