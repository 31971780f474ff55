"""GitHub Actions: the pipeline model as ``delivery.yml`` (the chain), ``ci.yml`` (a pull request's image check) and
``preview.yml`` (every CI stack previewed with the policy pack, one sticky comment with a section per stack).

GitHub-specific choices: tools come from actions pinned by commit SHA (:mod:`.pins`); GHCR takes the job's
own token (``packages`` permission), other static registries the stack environment's secret, cloud registries the
cloud's OIDC login action; keyless signatures carry the identity of ``delivery.yml`` on the default branch and GitHub's
build provenance is attested beside them; the prod stack's job waits in its GitHub environment for its reviewers.

Rules every document follows (and ``tests/unit/test_workflows.py`` checks):

- every ``uses:`` is a commit SHA from :mod:`dockyard.pipeline.pins`;
- top-level ``permissions: {}``; each job asks only for what it uses;
- no ``${{ secrets.* }}`` / ``${{ github.event.* }}`` inside ``run:``: values reach scripts through ``env:``;
- ``actions/checkout`` never persists the token; every job has a timeout.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dockyard.model.config import EnvironmentConfig, Tier
from dockyard.model.registry import AwsLogin, AzureLogin, GcpLogin, RegistryKind
from dockyard.pipeline.derive import (
    VULNERABILITY_ARTIFACT,
    building_stack,
    ci_stacks,
    lint_command,
    preview_command,
    summary_command,
)
from dockyard.pipeline.model import (
    BUILD_JOB,
    CI_TEST_JOB,
    COMMENT_JOB,
    COSIGN_VERSION,
    HELM_VERSION,
    IMAGE_REF,
    INSTALL_PROJECT,
    JUNIT_CONVERTER,
    PIP_INSTALL,
    PREVIEW_DIRECTORY,
    PREVIEW_JOB,
    PREVIEW_SUMMARY,
    PULUMI_CLI_VERSION,
    PYTHON_VERSION,
    SECRET_KUBECONFIG,
    SECRET_REGISTRY_PASSWORD,
    SUMMARY_JOB,
    SYFT_VERSION,
    TEST_REPORTS_ARTIFACT,
    TEST_REPORTS_DIRECTORY,
    VARIABLE_REGISTRY_HOST,
    VARIABLE_REGISTRY_USERNAME,
    VULNERABILITY_REPORT,
    Access,
    CiFact,
    Command,
    EnvValue,
    ImageOutput,
    Job,
    Pipeline,
    RegistryLogin,
    Secret,
    ServiceAddress,
    ServiceContainer,
    Stage,
    Tool,
    Variable,
    mr_environment_name,
    preview_environment_name,
)
from dockyard.pipeline.pins import TRIVY_VERSION, uses
from dockyard.pipeline.render import Document, dump_yaml
from dockyard_components.scanner import FINDINGS_EXIT_CODE

Step = dict[str, Any]

WORKFLOW_DIRECTORY = ".github/workflows"
DELIVERY_WORKFLOW = "delivery.yml"
RUNNER = "ubuntu-24.04"
GITHUB_OIDC_ISSUER = "https://token.actions.githubusercontent.com"
#: Hidden marker of the one preview comment per pull request (the sticky-comment action's header).
PREVIEW_COMMENT_HEADER = "dockyard-preview"

#: Why a job may hold each permission beyond ``contents: read``; written next to the grant in the YAML.
PERMISSION_REASONS: dict[tuple[str, str], str] = {
    ("packages", "read"): "pull the image to scan it",
    (
        "packages",
        "write",
    ): "push to GHCR: signatures, attestations and provenance beside an image, a merge request's image",
    ("id-token", "write"): "OIDC token for keyless cosign signing and the provenance attestation",
    ("attestations", "write"): "store the build provenance attestation",
    ("pull-requests", "write"): "create or update the one preview summary comment",
    ("contents", "write"): "commit the promoted stack file to the default branch",
}
#: The reason written instead when a cloud registry's OIDC login is what the token is for (too).
CLOUD_ID_TOKEN_REASON = "OIDC token for the cloud registry login (and keyless signing, provenance where signed)"


def _expr(expression: str) -> str:
    return "${{ " + expression + " }}"


def keyless_identity(repository: str, branch: str = "main") -> str:
    """The certificate identity of the keyless signatures ``delivery.yml`` makes (a trust policy pins it)."""
    return f"https://github.com/{repository}/{WORKFLOW_DIRECTORY}/{DELIVERY_WORKFLOW}@refs/heads/{branch}"


def _value(value: EnvValue, pipeline: Pipeline) -> str:
    if isinstance(value, Secret):
        return _expr(f"secrets.{value.name}")
    if isinstance(value, Variable):
        return _expr(f"vars.{value.name}")
    if isinstance(value, ImageOutput):
        return _expr(f"needs.{BUILD_JOB}.outputs.{IMAGE_REF}")
    if value == CiFact.SIGNING_IDENTITY:
        assert pipeline.repository is not None, "github.enabled implies github.repository"
        return keyless_identity(pipeline.repository, pipeline.default_branch)
    if value == CiFact.SIGNING_ISSUER:
        return GITHUB_OIDC_ISSUER
    if value == CiFact.PIPELINE_URL:
        return _expr("github.server_url") + "/" + _expr("github.repository") + "/actions/runs/" + _expr("github.run_id")
    if value == CiFact.MERGE_REQUEST:
        return _expr("github.event.pull_request.number")
    if value == CiFact.PUSH_REMOTE:
        # The job token (contents: write) for this push only: the checkout never persists it in .git/config.
        return "https://x-access-token:" + _expr("github.token") + "@github.com/" + _expr("github.repository") + ".git"
    if isinstance(value, ServiceAddress):
        # The job runs on the runner's host; each service container's ports are published there.
        return f"localhost:{value.port}"
    return value


def _run(command: Command, pipeline: Pipeline, **extra: str) -> Step:
    step: Step = {"name": command.name}
    if extra:
        step.update(extra)
    step["env"] = {name: _value(value, pipeline) for name, value in command.env.items()}
    script = command.script
    if command.publishes:
        script += f'echo "{IMAGE_REF}=${command.publishes}" >> "$GITHUB_OUTPUT"\n'
    step["run"] = script
    return step


def _on_failure(job: Job, pipeline: Pipeline) -> list[Step]:
    """The job's failure step: after any step of it has failed, never otherwise."""
    return [] if job.on_failure is None else [_run(job.on_failure, pipeline, **{"if": "failure()"})]


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
            "run": INSTALL_PROJECT,
        },
    ]


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


def _go_install(tool: str, version: str, install: str) -> Step:
    """``tool`` from the Go module proxy (checked against sum.golang.org) into the job's PATH; ``install`` is the
    ``go install`` arguments, reading the version from ``$<TOOL>_VERSION``."""
    variable = f"{tool.upper()}_VERSION"
    return {
        "name": f"Install {tool} {version}",
        "env": {variable: version},
        "run": f'GOBIN="$RUNNER_TEMP/bin" {install}\necho "$RUNNER_TEMP/bin" >> "$GITHUB_PATH"\n',
    }


def _install_syft() -> Step:
    # The version goes in so the SBOM names its creator.
    return _go_install(
        "syft",
        SYFT_VERSION,
        'go install -ldflags "-X main.version=$SYFT_VERSION" "github.com/anchore/syft/cmd/syft@$SYFT_VERSION"',
    )


def _install_helm() -> Step:
    # As scripts/bootstrap-supply-chain.sh builds it; the ldflag is the version it reports.
    return _go_install(
        "helm",
        HELM_VERSION,
        "CGO_ENABLED=0 go install -trimpath "
        '-ldflags "-s -w -X helm.sh/helm/v4/internal/version.version=$HELM_VERSION" '
        '"helm.sh/helm/v4/cmd/helm@$HELM_VERSION"',
    )


def _install_trivy() -> Step:
    # Where a stack's program scans (ScannedImage, a promotion's re-scan), not the scan job's action.
    return {
        "name": f"Install trivy {TRIVY_VERSION}",
        "uses": uses("aquasecurity/setup-trivy"),
        # A binary cache restored into a release job could be poisoned by any branch's run.
        "with": {"version": TRIVY_VERSION, "cache": False},
    }


_TOOL_STEPS = {
    Tool.COSIGN: _install_cosign,
    Tool.SYFT: _install_syft,
    Tool.HELM: _install_helm,
    Tool.TRIVY: _install_trivy,
}


def cloud_login_steps(registry: RegistryLogin, *, docker: bool) -> list[Step]:
    """The cloud's own OIDC login action (no stored key); with ``docker``, also the registry login for tools that
    read the docker config (Trivy, cosign, syft)."""
    cloud = registry.cloud
    if isinstance(cloud, AwsLogin):
        steps: list[Step] = [
            {
                "name": "Log in to AWS (OIDC)",
                "uses": uses("aws-actions/configure-aws-credentials"),
                "with": {"role-to-assume": cloud.role_arn, "aws-region": registry.region},
            }
        ]
        if docker:
            steps.append({"name": "Log in to Amazon ECR", "uses": uses("aws-actions/amazon-ecr-login")})
        return steps
    if isinstance(cloud, AzureLogin):
        steps = [
            {
                "name": "Log in to Azure (OIDC)",
                "uses": uses("azure/login"),
                "with": {
                    "client-id": cloud.client_id,
                    "tenant-id": cloud.tenant_id,
                    "subscription-id": cloud.subscription_id,
                },
            }
        ]
        if docker:
            steps.append(
                {
                    "name": "Log in to Azure Container Registry",
                    "env": {"ACR_NAME": str(registry.acr_name)},
                    "run": 'az acr login --name "$ACR_NAME"\n',
                }
            )
        return steps
    if isinstance(cloud, GcpLogin):
        steps = [
            {
                "name": "Log in to Google Cloud (OIDC)",
                "uses": uses("google-github-actions/auth"),
                "with": {
                    "workload_identity_provider": cloud.workload_identity_provider,
                    "service_account": cloud.service_account,
                },
            }
        ]
        if docker:
            steps.append(
                {
                    "name": "Let docker use the Google credentials",
                    "env": {"REGISTRY": registry.host},
                    "run": 'gcloud auth configure-docker "$REGISTRY" --quiet\n',
                }
            )
        return steps
    return []


def _registry_login(registry: RegistryLogin) -> list[Step]:
    if registry.kind.cloud:
        return cloud_login_steps(registry, docker=True)
    if registry.kind == RegistryKind.GHCR:
        # GHCR accepts the job's own short-lived token; the job's packages permission scopes it.
        login = {
            "registry": registry.host,
            "username": _expr("github.actor"),
            "password": _expr("secrets.GITHUB_TOKEN"),
        }
    else:
        login = {
            "registry": _expr(f"vars.{VARIABLE_REGISTRY_HOST}"),
            "username": _expr(f"vars.{VARIABLE_REGISTRY_USERNAME}"),
            "password": _expr(f"secrets.{SECRET_REGISTRY_PASSWORD}"),
        }
    return [{"name": "Log in to the registry", "uses": uses("docker/login-action"), "with": login}]


def _registry_access(stack: str, registry: RegistryLogin, level: Access) -> dict[str, Any]:
    """Job keys for registry access: GHCR takes the job token (``packages``), a cloud registry an OIDC token; others
    the stack environment's secret."""
    if registry.kind == RegistryKind.GHCR:
        return {"permissions": {"packages": level.value}}
    if registry.kind.cloud:
        return {"permissions": {"id-token": "write"}}
    return {"environment": stack, "permissions": {}}


def _upload(name: str, path: str, retention_days: int) -> Step:
    return {
        "name": f"Keep {path}",
        "uses": uses("actions/upload-artifact"),
        "with": {"name": name, "path": path, "if-no-files-found": "error", "retention-days": retention_days},
    }


def _upload_test_reports(folder: str) -> Step:
    # Also when a test failed the build; a reused digest ran no test, so an empty folder only warns. One run's
    # artifacts need distinct names: the build's keeps the established one, any other is named after its folder.
    name = TEST_REPORTS_ARTIFACT if folder == TEST_REPORTS_DIRECTORY else folder
    return {
        "name": f"Keep the test reports ({folder}/)",
        "if": _expr("!cancelled()"),
        "uses": uses("actions/upload-artifact"),
        "with": {"name": name, "path": f"{folder}/", "if-no-files-found": "warn", "retention-days": 7},
    }


def _download(name: str) -> Step:
    return {"name": f"Fetch {name}", "uses": uses("actions/download-artifact"), "with": {"name": name}}


def _trivy_gate(image_ref: str, pipeline: Pipeline) -> Step:
    """The scan with the building stack's settings (derive.scan_settings): its DB source, its severities and the
    distinct exit code of findings, as the program's ScannedImage scans."""
    db_repository, severities = pipeline.scan
    return {
        "name": f"Scan the image ({' or '.join(severities)} stops everything after it)",
        "uses": uses("aquasecurity/trivy-action"),
        "env": {"TRIVY_DB_REPOSITORY": db_repository},
        "with": {
            "image-ref": image_ref,
            "version": TRIVY_VERSION,
            "scanners": "vuln",
            "severity": ",".join(severities),
            "exit-code": str(FINDINGS_EXIT_CODE),
            # A cache restored into a release job could be poisoned by any branch's run.
            "cache": "false",
        },
    }


# --- ci.yml: the pull request's image check ---------------------------------------------------------------------


def ci_workflow(pipeline: Pipeline) -> Document:
    """``ci.yml``: on a pull request, build the test stage and the runtime image and scan it; nothing is pushed.

    BuildKit is enough here since the image never leaves the runner (the model's check job runs podman elsewhere).
    """
    build = pipeline.build
    common: dict[str, Any] = {
        "context": build.context,
        "file": f"{build.context}/{build.dockerfile}",
        # The check loads one image into the runner (an index cannot be loaded): the first platform listed.
        "platforms": build.target_platforms[0],
        "push": False,
    }
    if build.build_args:
        common["build-args"] = "".join(f"{key}={value}\n" for key, value in sorted(build.build_args.items()))
    scan_ref = "dockyard-ci:scan"
    steps: list[Step] = [
        _checkout(),
        _run(lint_command(build), pipeline),
        {"name": "Set up Buildx", "uses": uses("docker/setup-buildx-action")},
    ]
    reports = pipeline.check.test_reports
    if reports:
        # Before the test stage: a failing test's reports are exported too; BuildKit's cache runs the tests once.
        steps += [
            {
                "name": f"Export the test reports (target {build.test_reports_target})",
                "uses": uses("docker/build-push-action"),
                "with": {**common, "target": build.test_reports_target, "outputs": f"type=local,dest={reports}"},
            },
            {"name": "Write the JUnit report", "run": f"python3 {JUNIT_CONVERTER} {reports}\n"},
        ]
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
        _trivy_gate(scan_ref, pipeline),
        *([_upload_test_reports(reports)] if reports else []),
    ]
    return {
        "name": "ci",
        "on": {"pull_request": {"branches": [pipeline.default_branch]}},
        "permissions": {},
        "concurrency": {"group": "ci-" + _expr("github.ref"), "cancel-in-progress": True},
        "jobs": {
            CI_TEST_JOB: {
                "name": CI_TEST_JOB,
                "runs-on": RUNNER,
                "timeout-minutes": pipeline.check.timeout_minutes,
                "permissions": {"contents": "read"},
                "steps": steps,
            }
        },
    }


# --- delivery.yml: build once, scan, sign, deploy, verify, promote ---------------------------------------------


def _one_update_at_a_time(stack: str) -> dict[str, Any]:
    # Across runs: a newer run's build never lands between this run's check and its deploy, and a queued update
    # waits instead of cancelling one that is running.
    return {"group": f"stack-{stack}", "cancel-in-progress": False}


def _program_permissions(registry: RegistryLogin) -> dict[str, str]:
    return {"contents": "read", **({"id-token": "write"} if registry.kind.cloud else {})}


def _service(service: ServiceContainer) -> dict[str, Any]:
    """A job service container: its ports published on the runner (the job runs on the host), its health check as
    the runner's ``--health-*`` options (the job's steps start once it is healthy). The image is the pinned one, never
    a repository variable (an expression there is an unpinned image to zizmor, and to a reviewer)."""
    entry: dict[str, Any] = {"image": service.image}
    if service.ports:
        entry["ports"] = [f"{port}:{port}" for port in service.ports]
    if service.environment:
        entry["env"] = dict(service.environment)
    health = service.health
    if health is not None:
        command = health.command.replace("\\", "\\\\").replace('"', '\\"')
        options = [f'--health-cmd "{command}"']
        options += [f"--health-{name} {value}" for name, value in _health_timing(service) if value is not None]
        entry["options"] = " ".join(options)
    return entry


def _health_timing(service: ServiceContainer) -> list[tuple[str, object]]:
    assert service.health is not None
    health = service.health
    return [
        ("interval", health.interval),
        ("timeout", health.timeout),
        ("retries", health.retries),
        ("start-period", health.start_period),
    ]


def _integration_job(job: Job, pipeline: Pipeline) -> dict[str, Any]:
    """The app's integration tests on the runner, its services as the job's service containers; no secrets."""
    go_mod = f"{pipeline.build.context}/go.mod"
    setup_go = {
        "name": "Set up Go",
        "uses": uses("actions/setup-go"),
        # No cache: a cache another workflow wrote must not feed a job that gates the release (cache poisoning).
        "with": {"go-version-file": go_mod, "cache": False},
    }
    return {
        "name": job.name,
        "runs-on": RUNNER,
        "timeout-minutes": job.timeout_minutes,
        "permissions": {"contents": "read"},
        "services": {service.name: _service(service) for service in job.services},
        "steps": [
            _checkout(),
            *([setup_go] if Tool.GO in job.tools else []),
            *(_run(command, pipeline) for command in job.commands),
            *([_upload_test_reports(job.test_reports)] if job.test_reports else []),
        ],
    }


def _build_job(job: Job, pipeline: Pipeline) -> dict[str, Any]:
    assert job.stack is not None
    registry = pipeline.registries[job.stack]
    *checks, command = job.commands
    reports = [_upload_test_reports(job.test_reports)] if job.test_reports else []
    return {
        "name": job.name,
        **({"needs": list(job.needs)} if job.needs else {}),
        "runs-on": RUNNER,
        "timeout-minutes": job.timeout_minutes,
        "environment": job.environment,
        "concurrency": _one_update_at_a_time(job.stack),
        "permissions": _program_permissions(registry),
        "outputs": {IMAGE_REF: _expr(f"steps.{BUILD_JOB}.outputs.{IMAGE_REF}")},
        "steps": [
            _checkout(),
            *_python_and_pulumi(),
            *([_kubeconfig()] if Tool.KUBECONFIG in job.tools else []),
            *(cloud_login_steps(registry, docker=False) if job.cloud_login else []),
            *(_run(check, pipeline) for check in checks),
            _run(command, pipeline, id=BUILD_JOB),
            *reports,
            *_on_failure(job, pipeline),
        ],
    }


def _scan_job(job: Job, pipeline: Pipeline) -> dict[str, Any]:
    assert job.environment is not None
    assert job.registry is not None
    image = _value(ImageOutput(), pipeline)
    steps = [*_registry_login(pipeline.registry), _trivy_gate(image, pipeline)]
    if VULNERABILITY_ARTIFACT in job.keeps:
        # The same findings as the gate's, as the predicate of the vulnerability attestation.
        steps += [
            {
                "name": "Write the vulnerability report",
                "uses": uses("aquasecurity/trivy-action"),
                "with": {
                    "image-ref": image,
                    "version": TRIVY_VERSION,
                    "skip-setup-trivy": True,
                    "format": "cosign-vuln",
                    "output": VULNERABILITY_REPORT,
                    "cache": "false",
                },
            },
            _upload(VULNERABILITY_ARTIFACT, job.keeps[VULNERABILITY_ARTIFACT], 7),
        ]
    return {
        "name": job.name,
        "needs": list(job.needs),
        "runs-on": RUNNER,
        "timeout-minutes": job.timeout_minutes,
        **_registry_access(job.environment, pipeline.registry, job.registry),
        "steps": steps,
    }


def _supply_chain_job(job: Job, pipeline: Pipeline) -> dict[str, Any]:
    assert job.environment is not None
    assert job.registry is not None
    access = _registry_access(job.environment, pipeline.registry, job.registry)
    steps: list[Step] = [*_registry_login(pipeline.registry)]
    if job.commands:
        sbom, *signing = job.commands
        steps += [
            *(_TOOL_STEPS[tool]() for tool in job.tools),
            _run(sbom, pipeline),
            *(_download(name) for name in job.fetches),
            *(_run(command, pipeline) for command in signing),
        ]
    image = {"IMAGE_REF": _value(ImageOutput(), pipeline)}
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
        "name": job.name,
        "needs": list(job.needs),
        "runs-on": RUNNER,
        "timeout-minutes": job.timeout_minutes,
        **access,
        "permissions": {
            "contents": "read",
            **access["permissions"],
            "id-token": "write",
            "attestations": "write",
        },
        "steps": steps,
    }


def _stack_job(job: Job, pipeline: Pipeline) -> dict[str, Any]:
    """A job that updates its stack once the guard has checked the holder still has this run's digest."""
    assert job.stack is not None
    assert job.guard is not None
    registry = pipeline.registries[job.stack]
    return {
        "name": job.name,
        "needs": list(job.needs),
        "runs-on": RUNNER,
        "timeout-minutes": job.timeout_minutes,
        # Its secrets, and in prod its required reviewers and wait timer, gate this job.
        "environment": job.environment,
        "concurrency": _one_update_at_a_time(job.stack),
        "permissions": {**_program_permissions(registry), **({"contents": "write"} if job.pushes else {})},
        "steps": [
            _checkout(),
            *_python_and_pulumi(),
            _kubeconfig(),
            *(cloud_login_steps(registry, docker=False) if job.cloud_login else []),
            _run(job.guard, pipeline),
            *(_TOOL_STEPS[tool]() for tool in job.tools if tool in _TOOL_STEPS),
            *(_run(command, pipeline) for command in job.commands),
            *(_upload(name, path, 30) for name, path in job.keeps.items()),
            *_on_failure(job, pipeline),
        ],
    }


_JOBS = {
    Stage.INTEGRATION: _integration_job,
    Stage.BUILD: _build_job,
    Stage.SCAN: _scan_job,
    Stage.SUPPLY_CHAIN: _supply_chain_job,
    Stage.DEPLOY: _stack_job,
    Stage.PROMOTE: _stack_job,
}


def delivery_workflow(pipeline: Pipeline) -> Document:
    """``delivery.yml``: a push to main builds once, scans, signs, deploys and verifies the building stack, then
    promotes that digest down the ``promotion.upstream`` chain (:mod:`dockyard.pipeline.derive`)."""
    return {
        "name": "delivery",
        "on": {"push": {"branches": [pipeline.default_branch]}},
        "permissions": {},
        # Two runs of one commit (a re-run) would sign one digest at once, and cosign rewrites the signature
        # manifest, so one signature could be lost. Other commits' runs are ordered per stack by the jobs' groups.
        "concurrency": {"group": "delivery-" + _expr("github.sha"), "cancel-in-progress": False},
        "jobs": {job.id: _JOBS[job.stage](job, pipeline) for job in pipeline.delivery},
    }


# --- preview.yml ------------------------------------------------------------------------------------------------


def preview_workflow(pipeline: Pipeline) -> Document:
    """``preview.yml``: ``pulumi preview`` of every CI stack, a Markdown summary, one sticky comment."""
    same_repository = "github.event.pull_request.head.repo.full_name == github.repository"
    preview_steps: list[Step] = [
        _checkout(),
        *_python_and_pulumi(),
        *(_TOOL_STEPS[tool]() for tool in pipeline.preview_tools),
        _run(preview_command(_expr("matrix.stack"), pipeline.preview_registries()), pipeline),
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
        {"name": "Install dockyard", "run": PIP_INSTALL + "\n"},
        {
            "name": "Collect the previews",
            "uses": uses("actions/download-artifact"),
            "with": {"pattern": "preview-*", "merge-multiple": True, "path": PREVIEW_DIRECTORY},
        },
        _run(summary_command(), pipeline),
        _upload("pr-summary", PREVIEW_SUMMARY, 7),
    ]
    # The job that may write to the pull request runs no code from it: it only posts the summary file.
    comment_steps: list[Step] = [
        _download("pr-summary"),
        {
            "name": "Post or update the summary comment",
            "uses": uses("marocchino/sticky-pull-request-comment"),
            "with": {"header": PREVIEW_COMMENT_HEADER, "path": PREVIEW_SUMMARY},
        },
    ]
    return {
        "name": "preview",
        "on": {"pull_request": {"branches": [pipeline.default_branch]}},
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
                "environment": preview_environment_name(_expr("matrix.stack")),
                "strategy": {"fail-fast": False, "matrix": {"stack": list(pipeline.previews)}},
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


# --- mr-env.yml -------------------------------------------------------------------------------------------------

MR_ENV_WORKFLOW = "mr-env.yml"
#: Hourly, off the full hour (GitHub delays scheduled runs at the top of the hour).
SWEEP_SCHEDULE = "23 * * * *"


def mr_env_workflow(pipeline: Pipeline) -> Document | None:
    """``mr-env.yml``: a pull request's own environment, made or updated when it opens or changes, destroyed when
    it closes (``pull_request`` type ``closed``, merged or not), and the expired ones swept hourly.

    A workflow of its own: a job cannot wait on another workflow's job (ci.yml's check) without ``workflow_run``,
    which runs a fork's code with the repository's secrets; so the create job runs the test stage itself before it
    pushes. Its concurrency group never cancels a running update (the engine's lock would stay behind).
    """
    envs = pipeline.mr_environments
    if envs is None:
        return None
    same_repository = "github.event.pull_request.head.repo.full_name == github.repository"
    opened = f"github.event_name == 'pull_request' && github.event.action != 'closed' && {same_repository}"
    closed = f"github.event_name == 'pull_request' && github.event.action == 'closed' && {same_repository}"
    registry = pipeline.registry

    def job(each: Job, condition: str, *, checkout: Step) -> dict[str, Any]:
        # GHCR takes the job token for the merge request's push; a cloud registry an OIDC token.
        pushes = each.registry is not None and registry.kind == RegistryKind.GHCR
        return {
            "name": each.name,
            "if": condition,
            "runs-on": RUNNER,
            "timeout-minutes": each.timeout_minutes,
            # Its secrets: the scope merge request runs may use, never the template's own environment.
            "environment": mr_environment_name(envs.template),
            "permissions": {**_program_permissions(registry), **({"packages": "write"} if pushes else {})},
            "steps": [
                checkout,
                *_python_and_pulumi(),
                _kubeconfig(),
                *(cloud_login_steps(registry, docker=each.registry is not None) if each.cloud_login else []),
                *(_registry_login(registry) if each.registry and not registry.kind.cloud else []),
                *(_run(command, pipeline) for command in each.commands),
            ],
        }

    # Once a pull request is closed its merge ref may be gone, and what destroys runs the default branch's code.
    main = {**_checkout(), "with": {"persist-credentials": False, "ref": pipeline.default_branch}}
    return {
        "name": "mr-env",
        "on": {
            "pull_request": {
                "branches": [pipeline.default_branch],
                "types": ["opened", "synchronize", "reopened", "closed"],
            },
            "schedule": [{"cron": SWEEP_SCHEDULE}],
        },
        "permissions": {},
        "concurrency": {
            "group": "mr-env-" + _expr("github.event.pull_request.number || 'sweep'"),
            "cancel-in-progress": False,
        },
        "jobs": {
            envs.create.id: job(envs.create, opened, checkout=_checkout()),
            envs.stop.id: job(envs.stop, closed, checkout=main),
            envs.sweep.id: job(envs.sweep, "github.event_name == 'schedule'", checkout=main),
        },
    }


def required_checks(stacks: Mapping[str, EnvironmentConfig]) -> list[str]:
    """Status checks branch protection requires on ``main``: the image test and the non-prod previews.

    A prod-tier preview waits for the environment's reviewers before it may decrypt prod's secrets, so requiring
    it would hold every pull request on a release manager; prod is gated at deploy time instead.
    """
    checks = [CI_TEST_JOB] if building_stack(stacks) is not None else []
    checks += [f"{PREVIEW_JOB} ({name})" for name, env in ci_stacks(stacks).items() if env.tier != Tier.PROD]
    return checks


def documents(pipeline: Pipeline) -> dict[str, Document]:
    """Every workflow document by file name."""
    mr_env = mr_env_workflow(pipeline)
    return {
        "ci.yml": ci_workflow(pipeline),
        "preview.yml": preview_workflow(pipeline),
        DELIVERY_WORKFLOW: delivery_workflow(pipeline),
        **({MR_ENV_WORKFLOW: mr_env} if mr_env is not None else {}),
    }


def render(pipeline: Pipeline) -> dict[str, str]:
    """File contents by repository path (``.github/workflows/<name>``), each with the generated-file header, a
    ``# <version>`` comment on every pinned ``uses:`` and the reason next to every permission beyond read."""
    reasons = dict(PERMISSION_REASONS)
    if any(registry.kind.cloud for registry in pipeline.registries.values()):
        reasons[("id-token", "write")] = CLOUD_ID_TOKEN_REASON
    return {
        f"{WORKFLOW_DIRECTORY}/{filename}": dump_yaml(document, filename, reasons)
        for filename, document in documents(pipeline).items()
    }
