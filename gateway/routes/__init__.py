"""routes.yaml and what it decides: loading and validating it (sources, retention, routes, strict YAML), and,
pure, matching a delivery, mapping its input and admitting it as an event with its runs.

May import: gateway.execution (task definitions and retry policies named by routes), gateway.signatures.
"""
