"""The model core: what training and serving both run on a model-store entry (the compiled
forward and gradient passes, the explainers, faithfulness checks, heat-map rendering and the
prediction qualifier). It raises its own exceptions (`model_core.errors`) and knows nothing
of HTTP; `app/` maps them to statuses."""
