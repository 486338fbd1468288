"""What the gateway tells operators: spans (OpenTelemetry), Prometheus metrics and structured logs, behind one
hub that never fails what it observes.

May import: gateway.model, gateway.report, gateway.errors.
"""
