"""The ``dockyard`` command: promote, rollback, history, verify, metrics and pr-summary on the Automation API."""
