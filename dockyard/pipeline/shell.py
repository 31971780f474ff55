"""Shell shared by the renderers whose jobs run in a container (GitLab CI, CircleCI, Jenkins): each model command as
one subshell block that exports its environment and runs its script, the registry and cloud logins, the project
install. GitHub Actions has its own steps for these (:mod:`dockyard.pipeline.github`).

Values reach scripts only as environment variables: a secret is exported from the variable the CI system put it in
(``NAME="$SOURCE"``), never written into the file, and no block turns on tracing (``set -x`` would print it).
"""

from __future__ import annotations

import shlex
from collections.abc import Callable

from dockyard.model.registry import AwsLogin, AzureLogin, GcpLogin
from dockyard.pipeline.model import (
    IMAGE_REF,
    IMAGE_REF_ENV,
    INSTALL_PROJECT,
    SECRET_REGISTRY_PASSWORD,
    CiFact,
    Command,
    EnvValue,
    ImageOutput,
    RegistryLogin,
    Secret,
    ServiceAddress,
    Variable,
)

#: Where the build job writes the image reference it publishes (the only value that travels between jobs).
IMAGE_REF_FILE = f"{IMAGE_REF}.env"
#: The docker config the scanner, signer and SBOM tool read registry credentials from.
DOCKER_AUTH_FILE = '"$HOME/.docker/config.json"'

Resolve = Callable[[CiFact], str]


def value(item: EnvValue, facts: Resolve) -> str:
    """The shell expression of an environment value: a quoted literal, or a reference to a variable."""
    if isinstance(item, Secret | Variable):
        return f'"${item.name}"'
    if isinstance(item, ImageOutput):
        return f'"${IMAGE_REF_ENV}"'
    if isinstance(item, CiFact):
        return facts(item)
    if isinstance(item, ServiceAddress):
        # The CI systems that run jobs in a container put the services beside it, reachable by their names.
        return shlex.quote(f"{item.service}:{item.port}")
    return shlex.quote(item)


def block(command: Command, facts: Resolve, publish: str | None = None) -> str:
    """``command`` as a subshell: its environment exported, its script run; ``publish`` is the shell that hands on the
    published variable (``$ref``) when the command has one."""
    lines = [f"# {command.name}", "("]
    for name, item in command.env.items():
        expression = value(item, facts)
        if expression != f'"${name}"':
            lines.append(f"  export {name}={expression}")
    script = command.script.replace('echo "::error::', 'echo "error: ')
    lines += [f"  {line}" if line else "" for line in script.rstrip("\n").split("\n")]
    if command.publishes and publish:
        lines.append(f"  {publish.format(variable=command.publishes)}")
    lines.append(")")
    return "\n".join(lines) + "\n"


def install_project() -> str:
    """The program and ``dockyard`` in ``.venv`` (Python and the Pulumi CLI come with the runner image)."""
    return INSTALL_PROJECT


def cloud_login(registry: RegistryLogin, token: str) -> str:
    """Log the cloud's CLI in with the CI system's OIDC token (in ``$<token>``): the cloud's own federation, so no
    key is stored anywhere. The login persists in the CLI's config for the job's later blocks."""
    cloud = registry.cloud
    if isinstance(cloud, AwsLogin):
        # The AWS CLI and SDKs call sts:AssumeRoleWithWebIdentity themselves with this profile.
        return (
            'mkdir -p "$HOME/.aws"\n'
            "umask 077\n"
            f'printf \'%s\' "${token}" > "$HOME/.aws/web-identity-token"\n'
            "printf '[default]\\nrole_arn = %s\\nweb_identity_token_file = %s\\nregion = %s\\n' "
            f'{shlex.quote(cloud.role_arn)} "$HOME/.aws/web-identity-token" {shlex.quote(str(registry.region))} '
            '> "$HOME/.aws/config"\n'
            "aws sts get-caller-identity > /dev/null\n"
        )
    if isinstance(cloud, AzureLogin):
        return (
            f"az login --service-principal --username {cloud.client_id} --tenant {cloud.tenant_id} "
            f'--federated-token "${token}" --output none\n'
            f"az account set --subscription {cloud.subscription_id}\n"
        )
    if isinstance(cloud, GcpLogin):
        return (
            "umask 077\n"
            f'printf \'%s\' "${token}" > "$HOME/gcp-oidc-token"\n'
            f"gcloud iam workload-identity-pools create-cred-config {shlex.quote(cloud.workload_identity_provider)} "
            f"--service-account={cloud.service_account} "
            '--credential-source-file="$HOME/gcp-oidc-token" --output-file="$HOME/gcp-credentials.json"\n'
            'gcloud auth login --cred-file="$HOME/gcp-credentials.json" --quiet\n'
        )
    return ""


def oidc_audience(registry: RegistryLogin) -> str | None:
    """The audience the cloud's federation expects in the CI system's OIDC token (GitLab ``id_tokens``)."""
    cloud = registry.cloud
    if isinstance(cloud, AwsLogin):
        return "sts.amazonaws.com"
    if isinstance(cloud, AzureLogin):
        return "api://AzureADTokenExchange"
    if isinstance(cloud, GcpLogin):
        return f"https://iam.googleapis.com/{cloud.workload_identity_provider}"
    return None


def registry_login(registry: RegistryLogin) -> Command:
    """Log the tools that read the docker config (Trivy, cosign, syft) in to the registry: a cloud registry with a
    token minted now by its logged-in CLI, any other with the stack's password secret."""
    env: dict[str, EnvValue] = {"REGISTRY_HOST": registry.host, "REGISTRY_USERNAME": registry.username}
    password = f"$({registry.token_command})" if registry.token_command else f"${SECRET_REGISTRY_PASSWORD}"
    if not registry.token_command:
        env[SECRET_REGISTRY_PASSWORD] = Secret(SECRET_REGISTRY_PASSWORD)
    return Command(
        "Log in to the registry",
        f'mkdir -p "$HOME/.docker"\nprintf \'%s\' "{password}" | podman login --authfile {DOCKER_AUTH_FILE} '
        '--username "$REGISTRY_USERNAME" --password-stdin "$REGISTRY_HOST"\n',
        env,
    )
