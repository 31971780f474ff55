"""``python -m dockyard.admission``: how scripts/local-cluster.sh runs the webhook (no console script needed)."""

from dockyard.admission.cli import app

app(prog_name="dockyard admission")
