"""Views over the agent's kernel maps: Prometheus now, OTLP and JSON later."""
