"""The ``dockyard`` command: promote, canary steps, blue-green switches, rollback, verify, history, metrics and
pr-summary, each release move a previewed, recorded stack update run on the ``pulumi`` CLI."""
