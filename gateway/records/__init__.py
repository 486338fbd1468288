"""What people do with stored records: the service the CLI, the admin API and the dashboard all call (find,
inspect, replay, rerun, trigger, bulk jobs, routes test, prune), and the plain views and pages they show.

May import: gateway.routes, gateway.execution, gateway.store, gateway.telemetry.
"""
