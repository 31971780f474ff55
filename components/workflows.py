"""GitHub Actions workflows of the delivery pipeline, as pure functions of the stack configs.

Design: one chain of custody, and the building stack's own ``AppImage`` is the only build of a commit. A push to
``main`` runs ``delivery.yml``, which splits the building stack's update in two around the gates:

1. ``build``: ``pulumi up --target <its AppImage subtree>`` runs the test stage, builds and pushes (dev: podman, as
   on the local stacks) and records the digest in the stack's state. The job hands on that stack's ``image_ref``
   output, ``repo@sha256:...``, and refuses anything that is not digest-pinned.
2. ``scan``: Trivy on that digest; a HIGH or CRITICAL finding fails the job and so every job after it.
3. ``supply-chain``: syft SBOM, cosign signature, SBOM and vulnerability-report attestations, keyless (GitHub OIDC),
   and GitHub's build provenance. A stack with ``dockyard:signing`` (a key pair) signs in the program instead
   (``SignedImage``, during step 4, after the scan), and this job then attests only the provenance.
4. ``deploy-<stack>``: ``pulumi up --exclude <the AppImage subtree>``: everything else. The image cannot be rebuilt
   there, so the stack deploys exactly the scanned digest; ``dockyard verify`` follows.
5. ``promote-<stack>`` down ``promotion.upstream``: ``dockyard promote --from <upstream> --to <stack> --yes --verify``,
   then, as the stack's strategy needs, the canary walked to completion or the idle color switched to, so the next
   stack is promoted this run's digest. Each job runs in its stack's GitHub environment: prod waits for its reviewers.

Why the stack builds, rather than CI building and handing the digest to the stack: one build implementation (the same
``AppImage`` the local stacks run), whose recorded state is the proof of what was built; ``dockyard promote --from
dev`` reads dev's ``image_ref``, which is that build by construction; and dev's committed config keeps describing what
really happens. Handing a CI-built digest in would need a second build path (buildx) and rewriting dev's
``image.build`` into ``image.ref`` on every run.

Only ``needs.build.outputs.image-ref`` travels between jobs, and every job that reads a stack's ``image_ref`` first
checks it is still that digest (a newer run may have built since): no job re-reads a tag. ``ci.yml`` is the pull
request's check (test stage, runtime image, scan; never pushed); ``preview.yml`` previews every GitHub-enabled stack
with the policy pack and posts one comment with a section per stack, policy violations included.

The documents are plain dicts; :func:`render_workflow_files` serializes them with a generated-file header.
``python -m scripts.generate_workflows`` writes them to ``.github/workflows/`` and ``--check`` reports drift.

Rules every document follows (and ``tests/unit/test_workflows.py`` checks):

- every ``uses:`` is a commit SHA from :mod:`components.pins`;
- top-level ``permissions: {}``; each job asks only for what it uses;
- no ``${{ secrets.* }}`` / ``${{ github.event.* }}`` inside ``run:``: values reach scripts through ``env:``;
- ``actions/checkout`` never persists the token; every job has a timeout.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from components.config import (
    BlueGreenStrategy,
    CanaryStrategy,
    EnvironmentConfig,
    RegistryKind,
    Tier,
    parse_environment,
    read_stack_file,
)
from components.pins import TRIVY_VERSION, uses, version_of

Document = dict[str, Any]
Step = dict[str, Any]

WORKFLOW_DIRECTORY = ".github/workflows"
REGENERATE_COMMAND = "python -m scripts.generate_workflows"
DELIVERY_WORKFLOW = "delivery.yml"
DEFAULT_BRANCH = "main"
#: Release tags; the prod environment's deployment policy still admits them (components.github_ci).
RELEASE_TAGS = "v*"
RUNNER = "ubuntu-24.04"
PYTHON_VERSION = "3.11"
#: The CLI matching the ``pulumi`` SDK pinned in pyproject.toml (they are released together).
PULUMI_CLI_VERSION = "3.260.0"
#: The local supply-chain tools' versions (scripts/supply-chain/versions.env): CI signs as the local stacks verify.
COSIGN_VERSION = "v2.6.5"
SYFT_VERSION = "v1.57.1"
GITHUB_OIDC_ISSUER = "https://token.actions.githubusercontent.com"
POLICY_PACK = "policies"
#: Hidden marker of the one preview comment per pull request (the sticky-comment action's header).
PREVIEW_COMMENT_HEADER = "dockyard-preview"
#: Where each preview job writes ``<stack>.json`` and ``<stack>.events.jsonl``: ``dockyard pr-summary`` names a
#: section after the file and reads the policy violations from the event log beside it.
PREVIEW_DIRECTORY = "previews"
#: The component a building stack's image is: the build job targets it and its children, the deploy excludes them.
APP_IMAGE_TYPE = "dockyard:index:AppImage"
#: The stack output (``__main__``) that names the digest a stack serves.
IMAGE_REF_OUTPUT = "image_ref"
#: The one value handed between delivery jobs: the digest-pinned reference the build job pushed.
IMAGE_REF = "image-ref"
VULNERABILITY_REPORT = "vulnerabilities.json"
SBOM_FILE = "sbom.spdx.json"

# Names shared with components.github_ci, which creates the secrets and variables these workflows read.
SECRET_REGISTRY_PASSWORD = "REGISTRY_PASSWORD"
SECRET_KUBECONFIG = "KUBECONFIG"
SECRET_PASSPHRASE = "PULUMI_CONFIG_PASSPHRASE"
#: Token with admin rights on the repository for the pulumi-github provider: it cannot be created by the stack
#: that needs it, so an administrator stores it once in each stack environment (bootstrap).
SECRET_GITHUB_ADMIN_TOKEN = "DOCKYARD_GITHUB_TOKEN"
VARIABLE_REGISTRY_HOST = "REGISTRY_HOST"
VARIABLE_IMAGE_NAME = "IMAGE_NAME"
VARIABLE_REGISTRY_USERNAME = "REGISTRY_USERNAME"
VARIABLE_STACK = "PULUMI_STACK"
VARIABLE_NAMESPACE = "K8S_NAMESPACE"
#: Repository variable: where the Pulumi state lives (``pulumi login`` URL).
VARIABLE_BACKEND_URL = "PULUMI_BACKEND_URL"

CI_TEST_JOB = "image-test"
BUILD_JOB = "build"
SCAN_JOB = "scan"
SUPPLY_CHAIN_JOB = "supply-chain"
PREVIEW_JOB = "preview"
SUMMARY_JOB = "pr-summary"
COMMENT_JOB = "pr-comment"


class WorkflowConfigError(ValueError):
    """The stack configs do not describe one pipeline (e.g. two stacks build, or stacks use two repositories)."""


def _expr(expression: str) -> str:
    return "${{ " + expression + " }}"


def preview_environment(stack: str) -> str:
    """The GitHub environment a pull request's preview of ``stack`` runs in (it holds only the passphrase)."""
    return f"{stack}-preview"


def deploy_job_id(stack: str) -> str:
    """The job that deploys the building stack (everything but its image) and verifies it."""
    return f"deploy-{stack}"


def promote_job_id(stack: str) -> str:
    """The job that promotes this run's digest into ``stack``."""
    return f"promote-{stack}"


def image_urn_pattern(stack: str) -> str:
    """``pulumi up --target/--exclude`` pattern: the stack's AppImage and every resource under it, in any project."""
    return f"urn:pulumi:{stack}::*::{APP_IMAGE_TYPE}**"


def keyless_identity(repository: str) -> str:
    """The certificate identity of the keyless signatures ``delivery.yml`` makes (a trust policy pins it)."""
    return f"https://github.com/{repository}/{WORKFLOW_DIRECTORY}/{DELIVERY_WORKFLOW}@refs/heads/{DEFAULT_BRANCH}"


# --- selecting stacks -------------------------------------------------------------------------------------------


def github_stacks(stacks: Mapping[str, EnvironmentConfig]) -> dict[str, EnvironmentConfig]:
    """The stacks CI runs for (``github.enabled``), in name order; they must share one repository."""
    enabled = {name: stacks[name] for name in sorted(stacks) if stacks[name].github.enabled}
    repositories = {env.github.repository for env in enabled.values()}
    if len(repositories) > 1:
        raise WorkflowConfigError(
            f"github.repository differs between stacks ({', '.join(sorted(map(str, repositories)))}); "
            "allowed: one repository for every GitHub-enabled stack"
        )
    return enabled


def building_stack(stacks: Mapping[str, EnvironmentConfig]) -> tuple[str, EnvironmentConfig] | None:
    """The one GitHub-enabled stack with ``image.build``, whose image CI builds; None if no stack builds."""
    builders = [(name, env) for name, env in github_stacks(stacks).items() if env.image.build is not None]
    if len(builders) > 1:
        raise WorkflowConfigError(
            f"image.build is set in {', '.join(name for name, _ in builders)}; allowed: one building stack, "
            "the others receive its digest by promotion"
        )
    return builders[0] if builders else None


def promotions(stacks: Mapping[str, EnvironmentConfig]) -> list[tuple[str, str]]:
    """``(upstream, stack)`` for every GitHub-enabled stack that does not build, upstream first.

    Each must receive its digest from the building stack through a chain of GitHub-enabled stacks: a stack CI cannot
    deliver to would never be deployed by it.
    """
    enabled = github_stacks(stacks)
    builder = building_stack(stacks)
    if builder is None:
        raise WorkflowConfigError(
            "no GitHub-enabled stack has image.build; allowed: exactly one, where the delivery chain starts"
        )
    reached = {builder[0]}
    chain = []
    for name in _promotion_order(enabled):
        if name in reached:
            continue
        upstream = enabled[name].promotion.upstream
        if upstream is None or upstream not in reached:
            raise WorkflowConfigError(
                f"{name}: promotion.upstream is {upstream!r}; allowed: a GitHub-enabled stack on the chain that "
                f"starts at {builder[0]}, the stack CI builds"
            )
        reached.add(name)
        chain.append((upstream, name))
    return chain


def required_checks(stacks: Mapping[str, EnvironmentConfig]) -> list[str]:
    """Status checks branch protection requires on ``main``: the image test and the non-prod previews.

    A prod-tier preview waits for the environment's reviewers before it may decrypt prod's secrets, so requiring
    it would hold every pull request on a release manager; prod is gated at deploy time instead.
    """
    checks = [CI_TEST_JOB] if building_stack(stacks) is not None else []
    checks += [f"{PREVIEW_JOB} ({name})" for name, env in github_stacks(stacks).items() if env.tier != Tier.PROD]
    return checks


def _promotion_order(stacks: Mapping[str, EnvironmentConfig]) -> list[str]:
    """Stack names with every upstream before its downstream (ties by tier, then name); rejects cycles."""
    tiers = list(Tier)
    ordered: list[str] = []
    visiting: set[str] = set()

    def visit(name: str) -> None:
        if name in ordered:
            return
        if name in visiting:
            raise WorkflowConfigError(f"{name}: promotion.upstream forms a cycle; allowed: a chain dev → … → prod")
        visiting.add(name)
        upstream = stacks[name].promotion.upstream
        if upstream is not None and upstream in stacks:
            visit(upstream)
        visiting.discard(name)
        ordered.append(name)

    for name in sorted(stacks, key=lambda n: (tiers.index(stacks[n].tier), n)):
        visit(name)
    return ordered


# --- shared steps -----------------------------------------------------------------------------------------------


def _checkout() -> Step:
    return {
        "name": "Check out",
        "uses": uses("actions/checkout"),
        # The token stays out of .git/config, where any later step (or uploaded artifact) could read it.
        "with": {"persist-credentials": False},
    }


def _setup_python() -> Step:
    return {"name": "Set up Python", "uses": uses("actions/setup-python"), "with": {"python-version": PYTHON_VERSION}}


def _python_and_pulumi() -> list[Step]:
    return [
        _setup_python(),
        # Without a command the action only installs the CLI; the commands below run it directly.
        {"name": "Install Pulumi CLI", "uses": uses("pulumi/actions"), "with": {"pulumi-version": PULUMI_CLI_VERSION}},
        {
            "name": "Install the Pulumi program and dockyard",
            "run": "python -m venv .venv\n.venv/bin/python -m pip install --no-cache-dir .\n",
        },
    ]


def _state_env(stack: str) -> dict[str, str]:
    """What reading or updating ``stack`` needs: its name, the passphrase of its secrets, the backend."""
    return {
        "STACK": stack,
        SECRET_PASSPHRASE: _expr(f"secrets.{SECRET_PASSPHRASE}"),
        VARIABLE_BACKEND_URL: _expr(f"vars.{VARIABLE_BACKEND_URL}"),
    }


def _update_env(stack: str, env: EnvironmentConfig, *, github_admin: bool) -> dict[str, str]:
    """What ``pulumi up`` of ``stack`` needs beyond its state: the GitHub admin token, the registry password."""
    update = _state_env(stack)
    if github_admin:
        # pulumi-github reads GITHUB_TOKEN: the stack manages its own environment, secrets and variables.
        update["GITHUB_TOKEN"] = _expr(f"secrets.{SECRET_GITHUB_ADMIN_TOKEN}")
    if env.registry.password_env:
        # The stack reads its registry password from this variable instead of dockyard:registryPassword.
        update[env.registry.password_env] = _expr(f"secrets.{SECRET_REGISTRY_PASSWORD}")
    return update


def _this_run_image() -> str:
    return _expr(f"needs.{BUILD_JOB}.outputs.{IMAGE_REF}")


def _still_this_run_step(stack: str, verb: str) -> Step:
    """Fail unless ``stack`` still has this run's digest: a newer run may have built (and will deliver) since."""
    return {
        "name": f"Check that {stack} still {verb} this run's image",
        "env": {**_state_env(stack), "IMAGE_REF": _this_run_image()},
        "run": (
            f'current=$(pulumi stack output --stack "$STACK" {IMAGE_REF_OUTPUT})\n'
            'if [ "$current" != "$IMAGE_REF" ]; then\n'
            f'  echo "::error::$STACK {verb} $current, not $IMAGE_REF that this run built, scanned and signed; '
            'the newer run delivers it"\n'
            "  exit 1\n"
            "fi\n"
        ),
    }


def _kubeconfig() -> Step:
    return {
        "name": "Write the kubeconfig",
        "env": {"KUBECONFIG_CONTENT": _expr(f"secrets.{SECRET_KUBECONFIG}")},
        "run": (
            'if [ -n "$KUBECONFIG_CONTENT" ]; then\n'
            "  umask 077\n"
            '  printf \'%s\' "$KUBECONFIG_CONTENT" > "$RUNNER_TEMP/kubeconfig"\n'
            '  echo "KUBECONFIG=$RUNNER_TEMP/kubeconfig" >> "$GITHUB_ENV"\n'
            "fi\n"
        ),
    }


def _install_cosign() -> Step:
    return {
        "name": f"Install cosign {COSIGN_VERSION}",
        "uses": uses("sigstore/cosign-installer"),
        "with": {"cosign-release": COSIGN_VERSION},
    }


def _install_syft() -> Step:
    # From the Go module proxy, checked against sum.golang.org; the version goes in so the SBOM names its creator.
    return {
        "name": f"Install syft {SYFT_VERSION}",
        "env": {"SYFT_VERSION": SYFT_VERSION},
        "run": (
            'GOBIN="$RUNNER_TEMP/bin" go install -ldflags "-X main.version=$SYFT_VERSION" '
            '"github.com/anchore/syft/cmd/syft@$SYFT_VERSION"\n'
            'echo "$RUNNER_TEMP/bin" >> "$GITHUB_PATH"\n'
        ),
    }


def _registry_login(env: EnvironmentConfig) -> Step:
    if env.registry.kind == RegistryKind.GHCR:
        # GHCR accepts the job's own short-lived token; the job's packages permission scopes it.
        login = {
            "registry": env.registry.host,
            "username": _expr("github.actor"),
            "password": _expr("secrets.GITHUB_TOKEN"),
        }
    else:
        login = {
            "registry": _expr(f"vars.{VARIABLE_REGISTRY_HOST}"),
            "username": _expr(f"vars.{VARIABLE_REGISTRY_USERNAME}"),
            "password": _expr(f"secrets.{SECRET_REGISTRY_PASSWORD}"),
        }
    return {"name": "Log in to the registry", "uses": uses("docker/login-action"), "with": login}


def _registry_access(stack: str, env: EnvironmentConfig, level: str) -> dict[str, Any]:
    """Job keys for registry access: GHCR takes the job token (``packages``); others the stack environment's secret."""
    if env.registry.kind == RegistryKind.GHCR:
        return {"permissions": {"packages": level}}
    return {"environment": stack, "permissions": {}}


def _upload(name: str, path: str, retention_days: int) -> Step:
    return {
        "name": f"Keep {path}",
        "uses": uses("actions/upload-artifact"),
        "with": {"name": name, "path": path, "if-no-files-found": "error", "retention-days": retention_days},
    }


def _download(name: str) -> Step:
    return {"name": f"Fetch {name}", "uses": uses("actions/download-artifact"), "with": {"name": name}}


# --- ci.yml: the pull request's image check ---------------------------------------------------------------------


def ci_workflow(stack: str, env: EnvironmentConfig) -> Document:
    """``ci.yml``: on a pull request, build the test stage and the runtime image and scan it; nothing is pushed.

    This is the pull request's commit, not the one ``delivery.yml`` builds after the merge, so it is no second build
    of a delivered commit; BuildKit is enough here since the image never leaves the runner.
    """
    build = env.image.build
    if build is None:
        raise WorkflowConfigError(f"{stack}: image.build is not set; allowed: the stack that builds the image")
    common: dict[str, Any] = {
        "context": build.context,
        "file": f"{build.context}/{build.dockerfile}",
        "platforms": build.platform,
        "push": False,
    }
    if build.build_args:
        common["build-args"] = "".join(f"{key}={value}\n" for key, value in sorted(build.build_args.items()))
    scan_ref = "dockyard-ci:scan"
    steps: list[Step] = [_checkout(), {"name": "Set up Buildx", "uses": uses("docker/setup-buildx-action")}]
    if build.test_target:
        steps.append(
            {
                "name": f"Run the tests (target {build.test_target})",
                "uses": uses("docker/build-push-action"),
                "with": {**common, "target": build.test_target},
            }
        )
    steps += [
        {
            "name": f"Build the image (target {build.target})",
            "uses": uses("docker/build-push-action"),
            "with": {**common, "target": build.target, "load": True, "tags": scan_ref},
        },
        _trivy_gate(scan_ref),
    ]
    return {
        "name": "ci",
        "on": {"pull_request": {"branches": [DEFAULT_BRANCH]}},
        "permissions": {},
        "concurrency": {"group": "ci-" + _expr("github.ref"), "cancel-in-progress": True},
        "jobs": {
            CI_TEST_JOB: {
                "name": CI_TEST_JOB,
                "runs-on": RUNNER,
                "timeout-minutes": 30,
                "permissions": {"contents": "read"},
                "steps": steps,
            }
        },
    }


def _trivy_gate(image_ref: str) -> Step:
    return {
        "name": "Scan the image (HIGH or CRITICAL stops everything after it)",
        "uses": uses("aquasecurity/trivy-action"),
        "with": {
            "image-ref": image_ref,
            "version": TRIVY_VERSION,
            "severity": "CRITICAL,HIGH",
            "ignore-unfixed": True,
            "exit-code": "1",
            # A cache restored into a release job could be poisoned by any branch's run.
            "cache": "false",
        },
    }


# --- delivery.yml: build once, scan, sign, deploy, verify, promote ---------------------------------------------


def _build_job(stack: str, env: EnvironmentConfig) -> dict[str, Any]:
    return {
        "name": f"{BUILD_JOB} ({stack})",
        "runs-on": RUNNER,
        "timeout-minutes": 45,
        "environment": stack,
        "concurrency": _one_update_at_a_time(stack),
        "permissions": {"contents": "read"},
        "outputs": {IMAGE_REF: _expr(f"steps.{BUILD_JOB}.outputs.{IMAGE_REF}")},
        "steps": [
            _checkout(),
            *_python_and_pulumi(),
            {
                "name": "Test, build and push the image: its one build",
                "id": BUILD_JOB,
                "env": {**_update_env(stack, env, github_admin=False), "IMAGE_URN": image_urn_pattern(stack)},
                "run": (
                    f'pulumi up --yes --stack "$STACK" --policy-pack {POLICY_PACK} --target "$IMAGE_URN"\n'
                    f'ref=$(pulumi stack output --stack "$STACK" {IMAGE_REF_OUTPUT})\n'
                    'if ! [[ "$ref" =~ ^[^@[:space:]]+@sha256:[0-9a-f]{64}$ ]]; then\n'
                    f"  echo \"::error::$STACK exported {IMAGE_REF_OUTPUT} '$ref'; allowed: "
                    'registry/repository@sha256:<64 hex>"\n'
                    "  exit 1\n"
                    "fi\n"
                    f'echo "{IMAGE_REF}=$ref" >> "$GITHUB_OUTPUT"\n'
                ),
            },
        ],
    }


def _scan_job(stack: str, env: EnvironmentConfig) -> dict[str, Any]:
    steps = [_registry_login(env), _trivy_gate(_this_run_image())]
    if env.signing is None:
        # The same findings as the gate's, as the predicate of the vulnerability attestation.
        steps += [
            {
                "name": "Write the vulnerability report",
                "uses": uses("aquasecurity/trivy-action"),
                "with": {
                    "image-ref": _this_run_image(),
                    "version": TRIVY_VERSION,
                    "skip-setup-trivy": True,
                    "format": "cosign-vuln",
                    "output": VULNERABILITY_REPORT,
                    "cache": "false",
                },
            },
            _upload("vulnerability-report", VULNERABILITY_REPORT, 7),
        ]
    return {
        "name": SCAN_JOB,
        "needs": [BUILD_JOB],
        "runs-on": RUNNER,
        "timeout-minutes": 20,
        **_registry_access(stack, env, "read"),
        "steps": steps,
    }


def _supply_chain_job(stack: str, env: EnvironmentConfig) -> dict[str, Any]:
    access = _registry_access(stack, env, "write")
    image = {"IMAGE_REF": _this_run_image()}
    steps: list[Step] = [_registry_login(env)]
    if env.signing is None:
        repository = env.github.repository
        assert repository is not None, "github.enabled implies github.repository"
        identity = {**image, "IDENTITY": keyless_identity(repository), "ISSUER": GITHUB_OIDC_ISSUER}
        steps += [
            _install_cosign(),
            _install_syft(),
            {
                "name": "SBOM of the image (syft, SPDX JSON)",
                "env": image,
                "run": f'syft scan "registry:$IMAGE_REF" -o "spdx-json={SBOM_FILE}"\n',
            },
            _download("vulnerability-report"),
            {
                "name": "Sign the image (keyless)",
                "env": image,
                "run": 'cosign sign --yes "$IMAGE_REF"\n',
            },
            {
                "name": "Attest the SBOM and the vulnerability report",
                "env": image,
                "run": (
                    f'cosign attest --yes --type spdxjson --predicate {SBOM_FILE} "$IMAGE_REF"\n'
                    f'cosign attest --yes --type vuln --predicate {VULNERABILITY_REPORT} "$IMAGE_REF"\n'
                ),
            },
            {
                "name": "Check that they verify as this workflow's",
                "env": identity,
                "run": (
                    'trust=(--certificate-identity "$IDENTITY" --certificate-oidc-issuer "$ISSUER")\n'
                    'cosign verify "${trust[@]}" "$IMAGE_REF" > /dev/null\n'
                    "for type in spdxjson vuln; do\n"
                    '  cosign verify-attestation "${trust[@]}" --type "$type" "$IMAGE_REF" > /dev/null\n'
                    "done\n"
                ),
            },
        ]
    steps += [
        {
            "name": "Split the reference into name and digest",
            "id": "subject",
            "env": image,
            "run": 'printf \'name=%s\\ndigest=%s\\n\' "${IMAGE_REF%@*}" "${IMAGE_REF#*@}" >> "$GITHUB_OUTPUT"\n',
        },
        {
            "name": "Attest build provenance",
            "uses": uses("actions/attest-build-provenance"),
            "with": {
                "subject-name": _expr("steps.subject.outputs.name"),
                "subject-digest": _expr("steps.subject.outputs.digest"),
                "push-to-registry": True,
            },
        },
    ]
    return {
        "name": "SBOM, signature, attestations" if env.signing is None else "provenance (the program signs)",
        "needs": [BUILD_JOB, SCAN_JOB],
        "runs-on": RUNNER,
        "timeout-minutes": 30,
        **access,
        "permissions": {
            "contents": "read",
            **access["permissions"],
            "id-token": "write",
            "attestations": "write",
        },
        "steps": steps,
    }


def _stack_job(name: str, stack: str, needs: list[str], holder: str, verb: str, steps: list[Step]) -> dict[str, Any]:
    """A job that updates ``stack`` once ``holder`` is checked to still have this run's digest."""
    return {
        "name": name,
        "needs": [BUILD_JOB, SCAN_JOB, SUPPLY_CHAIN_JOB, *needs],
        "runs-on": RUNNER,
        "timeout-minutes": 60,
        # Its secrets, and in prod its required reviewers and wait timer, gate this job.
        "environment": stack,
        "concurrency": _one_update_at_a_time(stack),
        "permissions": {"contents": "read"},
        "steps": [_checkout(), *_python_and_pulumi(), _kubeconfig(), _still_this_run_step(holder, verb), *steps],
    }


def _one_update_at_a_time(stack: str) -> dict[str, Any]:
    # Across runs: a newer run's build never lands between this run's check and its deploy, and a queued update
    # waits instead of cancelling one that is running.
    return {"group": f"stack-{stack}", "cancel-in-progress": False}


def _deploy_job(stack: str, env: EnvironmentConfig) -> dict[str, Any]:
    # A signing stack's SignedImage runs in this update: syft and cosign must be on PATH for it.
    tools = [_install_cosign(), _install_syft()] if env.signing is not None else []
    return _stack_job(
        f"deploy {stack}",
        stack,
        [],
        stack,
        "holds",
        [
            *tools,
            {
                "name": "Deploy everything but the image, which cannot be rebuilt here",
                "env": {**_update_env(stack, env, github_admin=True), "IMAGE_URN": image_urn_pattern(stack)},
                "run": f'pulumi up --yes --stack "$STACK" --policy-pack {POLICY_PACK} --exclude "$IMAGE_URN"\n',
            },
            {
                "name": "Verify the deployment",
                "env": _state_env(stack),
                "run": '.venv/bin/dockyard verify --stack "$STACK"\n',
            },
        ],
    )


def _promote_job(upstream: str, upstream_job: str, stack: str, env: EnvironmentConfig) -> dict[str, Any]:
    # The target's trust policy checks the digest's signature with cosign before anything is written.
    tools = [_install_cosign()] if env.signing is not None else []
    return _stack_job(
        f"promote {upstream} → {stack}",
        stack,
        [upstream_job],
        upstream,
        "serves",
        [
            *tools,
            {
                "name": f"Promote {upstream} → {stack}, verify, undo on failure",
                "env": {**_update_env(stack, env, github_admin=True), "SOURCE": upstream},
                "run": '.venv/bin/dockyard promote --from "$SOURCE" --to "$STACK" --yes --verify\n',
            },
            *_release_steps(stack, env),
            # The promoted digest is in the stack file on this runner only; commit it from here.
            _upload(f"promoted-{stack}", f"Pulumi.{stack}.yaml", 30),
        ],
    )


def _release_steps(stack: str, env: EnvironmentConfig) -> list[Step]:
    """Take a promotion all the way to serving, so the next stack is promoted this run's digest.

    A promotion lands where the strategy takes a release: rolling serves it at once; a canary starts at its first step
    and is walked to completion, analysed at every step; a blue-green stack gets it on the idle color, which is then
    verified and switched to. Each command undoes its own move when its checks fail, and exits non-zero.
    """
    strategy = env.kubernetes.strategy
    if isinstance(strategy, CanaryStrategy):
        name, command = "Walk the canary to completion", 'dockyard canary advance --stack "$STACK" --auto --yes'
    elif isinstance(strategy, BlueGreenStrategy):
        name, command = "Switch to the idle color", 'dockyard switch --stack "$STACK" --yes'
    else:
        return []
    return [{"name": name, "env": _update_env(stack, env, github_admin=True), "run": f".venv/bin/{command}\n"}]


def delivery_workflow(stacks: Mapping[str, EnvironmentConfig]) -> Document:
    """``delivery.yml``: a push to main builds once, scans, signs, deploys and verifies the building stack, then
    promotes that digest down the ``promotion.upstream`` chain (see the module docstring)."""
    chain = promotions(stacks)
    builder = building_stack(stacks)
    assert builder is not None, "promotions() refuses a pipeline without a building stack"
    stack, env = builder
    jobs: dict[str, Any] = {
        BUILD_JOB: _build_job(stack, env),
        SCAN_JOB: _scan_job(stack, env),
        SUPPLY_CHAIN_JOB: _supply_chain_job(stack, env),
        deploy_job_id(stack): _deploy_job(stack, env),
    }
    for upstream, target in chain:
        upstream_job = deploy_job_id(upstream) if upstream == stack else promote_job_id(upstream)
        jobs[promote_job_id(target)] = _promote_job(upstream, upstream_job, target, stacks[target])
    return {
        "name": "delivery",
        "on": {"push": {"branches": [DEFAULT_BRANCH]}},
        "permissions": {},
        # Two runs of one commit (a re-run) would sign one digest at once, and cosign rewrites the signature
        # manifest, so one signature could be lost. Other commits' runs are ordered per stack by the jobs' groups.
        "concurrency": {"group": "delivery-" + _expr("github.sha"), "cancel-in-progress": False},
        "jobs": jobs,
    }


# --- preview.yml ------------------------------------------------------------------------------------------------


def preview_workflow(stacks: Mapping[str, EnvironmentConfig]) -> Document:
    """``preview.yml``: ``pulumi preview`` of every GitHub-enabled stack, a Markdown summary, one sticky comment."""
    names = list(github_stacks(stacks))
    if not names:
        raise WorkflowConfigError("no stack has github.enabled: true; allowed: at least one")
    same_repository = "github.event.pull_request.head.repo.full_name == github.repository"
    preview_steps: list[Step] = [
        _checkout(),
        *_python_and_pulumi(),
        {
            "name": "Preview",
            # The event log carries the policy pack's violations, which --json leaves out. The CLI only accepts
            # --event-log with PULUMI_DEBUG_COMMANDS set (3.260: "unknown flag" otherwise).
            "env": {
                **_state_env(_expr("matrix.stack")),
                "PREVIEWS": PREVIEW_DIRECTORY,
                "PULUMI_DEBUG_COMMANDS": "true",
            },
            "run": (
                'mkdir -p "$PREVIEWS"\n'
                f'pulumi preview --stack "$STACK" --policy-pack {POLICY_PACK} --json '
                '--event-log "$PREVIEWS/$STACK.events.jsonl" > "$PREVIEWS/$STACK.json"\n'
            ),
        },
        {
            "name": "Keep the preview for the summary",
            "if": _expr("!cancelled()"),
            "uses": uses("actions/upload-artifact"),
            "with": {
                "name": "preview-" + _expr("matrix.stack"),
                "path": f"{PREVIEW_DIRECTORY}/",
                "if-no-files-found": "error",
                "retention-days": 7,
            },
        },
    ]
    summary_steps: list[Step] = [
        _checkout(),
        _setup_python(),
        {"name": "Install dockyard", "run": "python -m pip install --no-cache-dir .\n"},
        {
            "name": "Collect the previews",
            "uses": uses("actions/download-artifact"),
            "with": {"pattern": "preview-*", "merge-multiple": True, "path": PREVIEW_DIRECTORY},
        },
        {
            "name": "Summarize",
            "env": {"PREVIEWS": PREVIEW_DIRECTORY},
            "run": 'dockyard pr-summary "$PREVIEWS"/*.json > pr-summary.md\n',
        },
        _upload("pr-summary", "pr-summary.md", 7),
    ]
    # The job that may write to the pull request runs no code from it: it only posts the summary file.
    comment_steps: list[Step] = [
        _download("pr-summary"),
        {
            "name": "Post or update the summary comment",
            "uses": uses("marocchino/sticky-pull-request-comment"),
            "with": {"header": PREVIEW_COMMENT_HEADER, "path": "pr-summary.md"},
        },
    ]
    return {
        "name": "preview",
        "on": {"pull_request": {"branches": [DEFAULT_BRANCH]}},
        "permissions": {},
        "concurrency": {
            "group": "preview-" + _expr("github.event.pull_request.number"),
            "cancel-in-progress": True,
        },
        "jobs": {
            PREVIEW_JOB: {
                "name": f"{PREVIEW_JOB} (" + _expr("matrix.stack") + ")",
                # Pull requests from forks get no secrets, so their previews could only fail.
                "if": same_repository,
                "runs-on": RUNNER,
                "timeout-minutes": 20,
                "permissions": {"contents": "read"},
                "environment": preview_environment(_expr("matrix.stack")),
                "strategy": {"fail-fast": False, "matrix": {"stack": names}},
                "steps": preview_steps,
            },
            SUMMARY_JOB: {
                "name": SUMMARY_JOB,
                "needs": PREVIEW_JOB,
                "if": _expr(f"!cancelled() && {same_repository}"),
                "runs-on": RUNNER,
                "timeout-minutes": 10,
                "permissions": {"contents": "read"},
                "steps": summary_steps,
            },
            COMMENT_JOB: {
                "name": COMMENT_JOB,
                "needs": SUMMARY_JOB,
                "if": same_repository,
                "runs-on": RUNNER,
                "timeout-minutes": 5,
                "permissions": {"pull-requests": "write"},
                "steps": comment_steps,
            },
        },
    }


# --- serialization ----------------------------------------------------------------------------------------------


class _WorkflowDumper(yaml.SafeDumper):
    """SafeDumper that writes multi-line scripts as ``|`` blocks, indents lists, and never emits anchors."""

    def ignore_aliases(self, data: Any) -> bool:
        return True

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        super().increase_indent(flow, False)


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_WorkflowDumper.add_representer(str, _represent_str)

_USES_LINE = re.compile(r"^(?P<line>\s*(?:- )?uses: (?P<ref>[^\s#]+))$", re.MULTILINE)
_PERMISSION_LINE = re.compile(r"^(?P<line>\s+(?P<scope>[a-z-]+): (?P<level>read|write))$", re.MULTILINE)

#: Why a job may hold each permission beyond ``contents: read``; written next to the grant in the YAML.
PERMISSION_REASONS: dict[tuple[str, str], str] = {
    ("packages", "read"): "pull the image to scan it",
    ("packages", "write"): "push the signature, attestations and provenance beside the image in GHCR",
    ("id-token", "write"): "OIDC token for keyless cosign signing and the provenance attestation",
    ("attestations", "write"): "store the build provenance attestation",
    ("pull-requests", "write"): "create or update the one preview summary comment",
}


def header(filename: str) -> str:
    """The comment block that opens every generated file."""
    return (
        f"# {filename}: generated by scripts/generate_workflows.py from the Pulumi.<stack>.yaml files.\n"
        f"# Do not edit by hand: change components/workflows.py or the stack config, then run\n"
        f"#   {REGENERATE_COMMAND}\n"
    )


def dump(document: Document, filename: str) -> str:
    """Serialize ``document`` with the generated-file header and a ``# <version>`` comment on every pinned ``uses:``."""
    body = yaml.dump(document, Dumper=_WorkflowDumper, sort_keys=False, width=4096, allow_unicode=True)

    def annotate(match: re.Match[str]) -> str:
        version = version_of(match["ref"])
        return f"{match['line']} # {version}" if version else match["line"]

    def explain(match: re.Match[str]) -> str:
        reason = PERMISSION_REASONS.get((match["scope"], match["level"]))
        return f"{match['line']} # {reason}" if reason else match["line"]

    return header(filename) + _PERMISSION_LINE.sub(explain, _USES_LINE.sub(annotate, body))


def workflow_documents(stacks: Mapping[str, EnvironmentConfig]) -> dict[str, Document]:
    """Every workflow document by file name; the GitHub-enabled stacks must form one chain (:func:`promotions`)."""
    delivery = delivery_workflow(stacks)
    builder = building_stack(stacks)
    assert builder is not None, "delivery_workflow refuses stacks without a building one"
    return {"ci.yml": ci_workflow(*builder), "preview.yml": preview_workflow(stacks), DELIVERY_WORKFLOW: delivery}


def render_workflow_files(stacks: Mapping[str, EnvironmentConfig]) -> dict[str, str]:
    """File contents by repository path (``.github/workflows/<name>``)."""
    return {
        f"{WORKFLOW_DIRECTORY}/{filename}": dump(document, filename)
        for filename, document in workflow_documents(stacks).items()
    }


# --- reading the committed stack files --------------------------------------------------------------------------


def read_stack_environments(project_dir: Path) -> dict[str, EnvironmentConfig]:
    """Parse the non-secret ``dockyard:`` keys of every ``Pulumi.<stack>.yaml`` in ``project_dir``.

    Secret keys are skipped (their ciphertext is never decrypted here); a stack whose keys do not validate raises
    :class:`components.config.ConfigError`.
    """
    environments: dict[str, EnvironmentConfig] = {}
    for path in sorted(project_dir.glob("Pulumi.*.yaml")):
        stack = path.name.removeprefix("Pulumi.").removesuffix(".yaml")
        environments[stack] = parse_environment(stack, read_stack_file(path))
    return environments
