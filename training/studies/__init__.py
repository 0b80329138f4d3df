"""Studies and reports over trained entries: cross-validation, seed spread, the localiser
alone, explanation quality, model cards."""
