"""The web dashboard at /ui: server-rendered pages (Jinja2, autoescaped) over gateway.records.service, the
same layer the CLI and the admin API call; sign-in with an admin token; CSRF-checked forms; a small script of
our own for live updates and the rerun editor's JSON check (docs/dashboard.md)."""

from gateway.web.dashboard.app import create_dashboard

__all__ = ["create_dashboard"]
