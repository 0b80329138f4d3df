"""The model store: the only contract between `training/` (writes) and `app/` (reads).

Each entry is `<root>/<model-name>/<version>/` with `manifest.json`, `model.keras` and
`model.weights.h5`. `manifest.py` defines the manifest, `store.py` finds, writes and
verifies entries, `preprocessing.py` is the one implementation of the model's input
transform that both sides run.
"""
