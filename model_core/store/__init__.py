"""Model-store entries: the manifest schema (`manifest.py`) and finding, writing and verifying
entries (`entries.py`). The store itself (`model_store/`) is data only."""
