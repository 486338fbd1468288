"""The ``gateway`` command: parsing, shared flags, the commands that find and inspect records (history) and
those that act on them (actions).

May import: everything below it.
"""
