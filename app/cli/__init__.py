"""Command-line tools installed with the project (`wbc-explain`)."""
