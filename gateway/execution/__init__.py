"""Running tasks: the ``@task`` registry, a run's context, retry arithmetic (pure), one attempt, the tasks'
own event loop and the executor that claims runs and records every attempt.

May import: gateway.store.interface (the one protocol the executor needs), gateway.telemetry.
"""
