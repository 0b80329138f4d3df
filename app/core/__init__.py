"""Infrastructure of the service: settings, errors, API keys, logs, Prometheus metrics and
the request middleware."""
