"""``dockyard admission``: run the webhook, print its registration."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
import yaml

from dockyard.admission.policy_controller import cluster_image_policy
from dockyard.admission.registration import webhook_configuration
from dockyard.model.config import environment_from_file
from dockyard.model.trust import TrustPolicy

app = typer.Typer(help="The admission webhook that makes the cluster enforce each stack's trust policy.")


@app.command("serve")
def serve_command(
    cert: Annotated[Path, typer.Option(help="TLS certificate (PEM) the API server verifies")],
    key: Annotated[Path, typer.Option(help="its private key")],
    kubeconfig: Annotated[Path, typer.Option(help="where namespaces and pull Secrets are read")],
    work_dir: Annotated[Path, typer.Option(help="the webhook's own trust cache and CA files")],
    host: str = "127.0.0.1",
    port: int = 10443,
) -> None:
    """Serve AdmissionReviews on https://HOST:PORT/validate until killed."""
    # Here, not at the top: the server loads the Kubernetes client, which no other dockyard command needs.
    from dockyard.admission.server import serve

    serve(host, port, cert, key, kubeconfig, work_dir)


@app.command("registration")
def registration_command(
    url: Annotated[str, typer.Option(help="where the API server reaches the webhook")],
    ca_file: Annotated[Path, typer.Option(help="the CA the webhook's certificate chains to")],
) -> None:
    """Print the ValidatingWebhookConfiguration (YAML) for ``kubectl apply -f -``."""
    typer.echo(yaml.safe_dump(webhook_configuration(url, ca_file.read_text()), sort_keys=False))


@app.command("cluster-image-policy")
def cluster_image_policy_command(
    stack: Annotated[str, typer.Option(help="the stack whose trust policy guards its namespace")],
    project: Annotated[Path, typer.Option(help="the project directory")] = Path("."),
) -> None:
    """Print the sigstore policy-controller ClusterImagePolicy (YAML) that enforces STACK's trust policy on a real
    cluster; label the stack's namespace policy.sigstore.dev/include=true."""
    env = environment_from_file(project, stack)
    if env.signing is None:
        raise typer.BadParameter(f"{stack} has no dockyard:signing: no trust policy to enforce", param_hint="--stack")
    policy = TrustPolicy.of(stack, env.signing, project)
    typer.echo(yaml.safe_dump(cluster_image_policy(policy, env.registry.image_name), sort_keys=False))
