"""A self-hosted webhook gateway: verify signed webhooks, route them, store them durably, run tasks.

Task code imports from here only: ``from gateway import task``.
"""

from gateway.tasks import Task, task

__all__ = ["Task", "task"]
__version__ = "0.1.0"
