"""A self-hosted webhook gateway: verify signed webhooks, route them, store them durably, run tasks.

Task code imports from here only: ``from gateway import task, Context, AbortRun, RetryAfter``.
"""

from gateway.errors import AbortRun, RetryAfter
from gateway.execution.context import Context
from gateway.execution.tasks import Task, task

__all__ = ["AbortRun", "Context", "RetryAfter", "Task", "task"]
__version__ = "0.1.0"
