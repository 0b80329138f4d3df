"""Offline training of the white-blood-cell classifier; writes model-store entries."""
