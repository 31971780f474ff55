"""The pipeline model from the stack configs: which stacks CI runs, the one that builds, the promotion chain, and the
jobs with the shell they run.

Design: one chain of custody, and the building stack's own ``AppImage`` is the only build of a commit. A push to the
default branch splits the building stack's update in two around the gates:

0. ``integration`` (with ``image.build.integration``): the app's integration tests against the services its compose
   file declares, run by each CI system as its own service containers, in a job without secrets; the build needs it.
1. ``build``: ``pulumi up --target <its AppImage subtree>`` runs the test stage, builds and pushes (dev: podman, as
   on the local stacks) and records the digest in the stack's state. The job hands on that stack's ``image_ref``
   output, ``repo@sha256:...``, and refuses anything that is not digest-pinned.
2. ``scan``: Trivy on that digest; a HIGH or CRITICAL finding fails the job and so every job after it.
3. ``supply-chain``: syft SBOM, cosign signature, SBOM and vulnerability-report attestations, keyless (the CI
   system's OIDC identity). A stack with ``dockyard:signing`` (a key pair) signs in the program instead
   (``SignedImage``, during step 4, after the scan).
4. ``deploy-<stack>``: ``pulumi up --exclude <the AppImage subtree>``: everything else. The image cannot be rebuilt
   there, so the stack deploys exactly the scanned digest; ``dockyard verify`` follows.
5. ``promote-<stack>`` down ``promotion.upstream``: ``dockyard promote --from <upstream> --to <stack> --yes --verify``,
   then, as the stack's strategy needs, the canary walked to completion or the idle color switched to, so the next
   stack is promoted this run's digest. Each job runs with its stack's secrets; prod waits for an approval.

Why the stack builds, rather than CI building and handing the digest to the stack: one build implementation (the same
``AppImage`` the local stacks run), whose recorded state is the proof of what was built; ``dockyard promote --from
dev`` reads dev's ``image_ref``, which is that build by construction; and dev's committed config keeps describing what
really happens. Handing a CI-built digest in would need a second build path and rewriting dev's ``image.build`` into
``image.ref`` on every run.

Every job that reads a stack's ``image_ref`` first checks it is still this run's digest (a newer run may have built
since): no job re-reads a tag.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from pathlib import Path

from dockyard.model.config import (
    BuildConfig,
    EnvironmentConfig,
    Tier,
    parse_environment,
    read_stack_file,
    stack_file,
    stack_names,
)
from dockyard.model.merge_requests import DEFAULT_TTL, parse_ttl
from dockyard.model.notifications import Event
from dockyard.model.problems import Problem
from dockyard.pipeline.compose import IntegrationEnvironment, read_integration
from dockyard.pipeline.model import (
    BUILD_JOB,
    CHECK_IMAGE,
    CI_TEST_JOB,
    DEFAULT_BRANCH,
    IMAGE_REF_ENV,
    IMAGE_REF_OUTPUT,
    INTEGRATION_JOB,
    INTEGRATION_REPORTS_DIRECTORY,
    INTEGRATION_TAG,
    JUNIT_CONVERTER,
    MR_DIGEST_FILE,
    MR_ENV_JOB,
    MR_ENV_STOP_JOB,
    MR_ENV_SWEEP_JOB,
    POLICY_PACK,
    PREVIEW_DIRECTORY,
    PREVIEW_SUMMARY,
    SBOM_FILE,
    SCAN_JOB,
    SECRET_GITHUB_ADMIN_TOKEN,
    SECRET_PASSPHRASE,
    SECRET_REGISTRY_PASSWORD,
    SUPPLY_CHAIN_JOB,
    TEST_REPORTS_DIRECTORY,
    VARIABLE_BACKEND_URL,
    VULNERABILITY_REPORT,
    Access,
    Approval,
    CiFact,
    Command,
    EnvValue,
    ImageOutput,
    Job,
    MergeRequestEnvironments,
    Pipeline,
    PipelineConfigError,
    RegistryLogin,
    Secret,
    ServiceAddress,
    Signing,
    Stage,
    Tool,
    Trigger,
    deploy_job_id,
    image_urn_pattern,
    mr_environment_name,
    promote_job_id,
    registry_urn_pattern,
)
from dockyard.pipeline.pins import HADOLINT_REQUIREMENT
from dockyard.pipeline.shell import DOCKER_AUTH_FILE
from dockyard_components.scanner import DEFAULT_DB_REPOSITORY, SEVERITIES, scan_script
from dockyard_components.test_reports import REPORTS_ENV

#: Artifact names of the files that travel between jobs (never an image: only the reference does).
VULNERABILITY_ARTIFACT = "vulnerability-report"
#: trivy's JSON report of a scan step.
SCAN_REPORT = "trivy-report.json"


# --- selecting stacks -------------------------------------------------------------------------------------------


def ci_stacks(
    stacks: Mapping[str, EnvironmentConfig], chosen: Collection[str] | None = None
) -> dict[str, EnvironmentConfig]:
    """The stacks CI runs for, in name order: ``chosen`` (e.g. the local chain, rendered to run on this machine),
    else those with ``github.enabled``; they must share one repository."""
    unknown = sorted(set(chosen or ()) - set(stacks))
    if unknown:
        raise PipelineConfigError(
            [Problem(name, "stack", "no Pulumi.<stack>.yaml", "allowed: a stack of the project") for name in unknown]
        )
    enabled = {
        name: stacks[name]
        for name in sorted(stacks)
        if (name in chosen if chosen is not None else stacks[name].github.enabled)
    }
    repositories = {env.github.repository for env in enabled.values()}
    if len(repositories) > 1:
        raise PipelineConfigError(
            [
                Problem(
                    None,
                    "github.repository",
                    f"differs between stacks ({', '.join(sorted(map(str, repositories)))})",
                    "allowed: one repository for every GitHub-enabled stack",
                )
            ]
        )
    return enabled


def building_stack(
    stacks: Mapping[str, EnvironmentConfig], chosen: Collection[str] | None = None
) -> tuple[str, EnvironmentConfig] | None:
    """The one CI stack with ``image.build``, whose image CI builds; None if no stack builds."""
    builders = [(name, env) for name, env in ci_stacks(stacks, chosen).items() if env.image.build is not None]
    if len(builders) > 1:
        raise PipelineConfigError(
            [
                Problem(
                    None,
                    "image.build",
                    f"set in {', '.join(name for name, _ in builders)}",
                    "allowed: one building stack, the others receive its digest by promotion",
                )
            ]
        )
    return builders[0] if builders else None


def promotions(stacks: Mapping[str, EnvironmentConfig], chosen: Collection[str] | None = None) -> list[tuple[str, str]]:
    """``(upstream, stack)`` for every CI stack that does not build, upstream first.

    Each must receive its digest from the building stack through a chain of CI stacks: a stack CI cannot deliver to
    would never be deployed by it.
    """
    enabled = ci_stacks(stacks, chosen)
    builder = building_stack(stacks, chosen)
    if builder is None:
        raise PipelineConfigError(
            [
                Problem(
                    None,
                    "image.build",
                    "no GitHub-enabled stack has image.build",
                    "allowed: exactly one, where the delivery chain starts",
                )
            ]
        )
    reached = {builder[0]}
    chain = []
    for name in _promotion_order(enabled):
        if name in reached:
            continue
        upstream = enabled[name].promotion.upstream
        if upstream is None or upstream not in reached:
            raise PipelineConfigError(
                [
                    Problem(
                        name,
                        "promotion.upstream",
                        f"found {upstream!r}",
                        f"allowed: a GitHub-enabled stack on the chain that starts at {builder[0]}, "
                        "the stack CI builds",
                    )
                ]
            )
        reached.add(name)
        chain.append((upstream, name))
    return chain


def _promotion_order(stacks: Mapping[str, EnvironmentConfig]) -> list[str]:
    """Stack names with every upstream before its downstream (ties by tier, then name); rejects cycles."""
    tiers = list(Tier)
    ordered: list[str] = []
    visiting: set[str] = set()

    def visit(name: str) -> None:
        if name in ordered:
            return
        if name in visiting:
            raise PipelineConfigError(
                [Problem(name, "promotion.upstream", "forms a cycle", "allowed: a chain dev → … → prod")]
            )
        visiting.add(name)
        upstream = stacks[name].promotion.upstream
        if upstream is not None and upstream in stacks:
            visit(upstream)
        visiting.discard(name)
        ordered.append(name)

    for name in sorted(stacks, key=lambda n: (tiers.index(stacks[n].tier), n)):
        visit(name)
    return ordered


# --- commands ---------------------------------------------------------------------------------------------------


def state_env(stack: str) -> dict[str, EnvValue]:
    """What reading or updating ``stack`` needs: its name, the passphrase of its secrets, the backend."""
    return {
        "STACK": stack,
        SECRET_PASSPHRASE: Secret(SECRET_PASSPHRASE),
        VARIABLE_BACKEND_URL: Secret(VARIABLE_BACKEND_URL),
    }


def _update_env(stack: str, env: EnvironmentConfig, *, github_admin: bool) -> dict[str, EnvValue]:
    """What ``pulumi up`` of ``stack`` needs beyond its state: the GitHub admin token, the registry password."""
    update = state_env(stack)
    if github_admin:
        # pulumi-github reads GITHUB_TOKEN: the stack manages its own environment, secrets and variables.
        update["GITHUB_TOKEN"] = Secret(SECRET_GITHUB_ADMIN_TOKEN)
    if env.registry.password_env and not env.registry.kind.cloud:
        # The stack reads its registry password from this variable instead of dockyard:registryPassword.
        update[env.registry.password_env] = Secret(SECRET_REGISTRY_PASSWORD)
    return update


def _with_registry_token(script: str, env: EnvironmentConfig) -> str:
    """A cloud registry's password is a token minted now by the OIDC-logged-in cloud CLI, never a stored secret."""
    login = registry_login(env)
    if login.token_command is None or login.password_env is None:
        return script
    return f'{login.password_env}="$({login.token_command})"\nexport {login.password_env}\n' + script


def _still_this_run(stack: str, verb: str) -> Command:
    """Fail unless ``stack`` still has this run's digest: a newer run may have built (and will deliver) since."""
    return Command(
        f"Check that {stack} still {verb} this run's image",
        (
            f'current=$(pulumi stack output --stack "$STACK" {IMAGE_REF_OUTPUT})\n'
            'if [ "$current" != "$IMAGE_REF" ]; then\n'
            f'  echo "::error::$STACK {verb} $current, not $IMAGE_REF that this run built, scanned and signed; '
            'the newer run delivers it"\n'
            "  exit 1\n"
            "fi\n"
        ),
        {**state_env(stack), IMAGE_REF_ENV: ImageOutput()},
    )


def _release_command(stack: str, env: EnvironmentConfig) -> Command | None:
    """Take a promotion all the way to serving, so the next stack is promoted this run's digest.

    A promotion lands where the strategy takes a release: rolling serves it at once; a canary starts at its first step
    and is walked to completion, analysed at every step; a blue-green stack gets it on the idle color, which is then
    verified and switched to. Each command undoes its own move when its checks fail, and exits non-zero.
    """
    completion = env.kubernetes.strategy.completion
    if completion is None:
        return None
    name, command = completion
    return Command(
        name, _with_registry_token(f".venv/bin/{command}\n", env), _update_env(stack, env, github_admin=True)
    )


def notify_command(stack: str, event: Event, *, image: bool) -> Command:
    """Tell ``stack``'s webhooks (``dockyard:notifications``) of ``event``, with this run's address and, once the build
    has published it, its digest. Its own failure is reported and swallowed: a notification never fails a release."""
    env: dict[str, EnvValue] = {**state_env(stack), "EVENT": event.value, "PIPELINE_URL": CiFact.PIPELINE_URL}
    if image:
        env[IMAGE_REF_ENV] = ImageOutput()
    return Command(
        f"Notify the webhooks of {stack}: {event.value}",
        '.venv/bin/dockyard notify --stack "$STACK" --event "$EVENT" --run-url "$PIPELINE_URL"'
        + (' --image "$IMAGE_REF"' if image else "")
        + ' || echo "dockyard notify failed (exit $?); the release is unaffected"\n',
        env,
    )


def _chart_commands(stack: str, env: EnvironmentConfig) -> tuple[Command, ...]:
    """A helm-mode stack publishes the chart of what its update just rendered (lint, package, push: its registry)."""
    if env.kubernetes.mode != "helm":
        return ()
    script = _with_registry_token('.venv/bin/dockyard chart --stack "$STACK"\n', env)
    return (
        Command("Publish the Helm chart of what was rendered", script, _update_env(stack, env, github_admin=False)),
    )


def _chart_tools(env: EnvironmentConfig) -> tuple[Tool, ...]:
    return (Tool.HELM,) if env.kubernetes.mode == "helm" else ()


def registry_login(env: EnvironmentConfig) -> RegistryLogin:
    registry = env.registry
    return RegistryLogin(
        kind=registry.kind,
        host=registry.host,
        username=registry.username,
        password_env=registry.password_env,
        cloud=registry.cloud_login,
        region=registry.region,
        acr_name=registry.acr_name,
    )


# --- jobs -------------------------------------------------------------------------------------------------------


def lint_command(build: BuildConfig) -> Command:
    """hadolint on the Dockerfile, before anything is built: the lint tier's pin, in a venv of its own (the job's
    Python may be the system's, which pip must not change)."""
    return Command(
        "Lint the Dockerfile (hadolint)",
        'linter="${TMPDIR:-/tmp}/dockyard-hadolint"\n'
        'python3 -m venv "$linter"\n'
        '"$linter/bin/python" -m pip install --quiet --no-cache-dir "$HADOLINT"\n'
        '"$linter/bin/hadolint" "$DOCKERFILE"\n',
        {"HADOLINT": HADOLINT_REQUIREMENT, "DOCKERFILE": f"{build.context}/{build.dockerfile}"},
    )


#: Seconds a job waits for each service's port before it fails (GitHub also waits for a healthy service first).
SERVICE_WAIT_SECONDS = 120
#: ``go test -json``'s events printed as ``go test -v`` would (the Dockerfile's test stage reads them the same way).
_PRINT_EVENTS = (
    'sed -e \'/"Output":"/!d\' -e \'s/.*"Output":"\\(.*\\)"[,}].*$/\\1/\' -e \'s/\\\\n$//\' '
    "-e 's/\\\\t/    /g' -e 's/\\\\\"/\"/g'"
)


def _integration_job(stack: str, env: EnvironmentConfig, integration: IntegrationEnvironment) -> Job:
    """The app's integration tests against its compose file's services, before the build (which needs it).

    A job of its own, not a step of the build: service containers belong to a job in GitLab, GitHub and CircleCI, and
    the build job holds the stack's secrets (passphrase, backend, registry password, kubeconfig) that third-party
    service images have no business running beside; this job holds none. The tests run on the runner with the Go
    toolchain the app's go.mod names, the services where each CI system puts them (:class:`ServiceAddress`).
    """
    assert env.image.build is not None
    context = env.image.build.context
    addresses = {
        f"SERVICE_{index}": ServiceAddress(service.name, port)
        for index, service in enumerate(integration.services)
        for port in service.ports[:1]
    }
    commands = []
    if addresses:
        commands.append(
            Command(
                f"Wait for the services ({', '.join(service.name for service in integration.services)})",
                "wait_for() {\n"
                "  waited=0\n"
                '  until (exec 3<>"/dev/tcp/${1%:*}/${1##*:}") 2>/dev/null; do\n'
                '    if [ "$waited" -ge "$WAIT_SECONDS" ]; then\n'
                '      echo "::error::$1 does not accept connections after ${waited}s"\n'
                "      exit 1\n"
                "    fi\n"
                "    sleep 2\n"
                "    waited=$((waited + 2))\n"
                "  done\n"
                '  echo "$1 accepts connections"\n'
                "}\n" + "".join(f'wait_for "${name}"\n' for name in addresses),
                {**addresses, "WAIT_SECONDS": str(SERVICE_WAIT_SECONDS)},
            )
        )
    commands.append(
        Command(
            f"Run the integration tests (go test -tags {INTEGRATION_TAG})",
            # The events, not the exit status alone: the report is written also when a test failed.
            'reports="$PWD/$REPORTS_DIR"\n'
            'mkdir -p "$reports"\n'
            "status=0\n"
            '(cd "$CONTEXT" && go test -tags "$TAGS" -count=1 -json ./...) > "$reports/go-test.json" || status=$?\n'
            f'{_PRINT_EVENTS} "$reports/go-test.json"\n'
            f'python3 {JUNIT_CONVERTER} "$reports"\n'
            'exit "$status"\n',
            {
                **integration.environment,
                "CONTEXT": context,
                "TAGS": INTEGRATION_TAG,
                "REPORTS_DIR": INTEGRATION_REPORTS_DIRECTORY,
            },
        )
    )
    return Job(
        id=INTEGRATION_JOB,
        name=f"integration tests ({stack})",
        stage=Stage.INTEGRATION,
        trigger=Trigger.MAIN,
        needs=(),
        timeout_minutes=30,
        commands=tuple(commands),
        test_reports=INTEGRATION_REPORTS_DIRECTORY,
        tools=(Tool.GO,),
        services=integration.services,
        compose=integration.compose,
    )


def _build_job(stack: str, env: EnvironmentConfig, integration: bool = False) -> Job:
    assert env.image.build is not None
    reports = TEST_REPORTS_DIRECTORY if env.image.build.test_reports_target else None
    build = Command(
        "Test, build and push the image: its one build",
        _with_registry_token(
            f'pulumi up --yes --stack "$STACK" --policy-pack {POLICY_PACK} --target "$IMAGE_URN" '
            '--target "$REGISTRY_URN"\n'
            f'ref=$(pulumi stack output --stack "$STACK" {IMAGE_REF_OUTPUT})\n'
            'if ! [[ "$ref" =~ ^[^@[:space:]]+@sha256:[0-9a-f]{64}$ ]]; then\n'
            f"  echo \"::error::$STACK exported {IMAGE_REF_OUTPUT} '$ref'; allowed: "
            'registry/repository@sha256:<64 hex>"\n'
            "  exit 1\n"
            "fi\n",
            env,
        ),
        {
            **_update_env(stack, env, github_admin=False),
            "IMAGE_URN": image_urn_pattern(stack),
            "REGISTRY_URN": registry_urn_pattern(stack),
            # The podman builder puts the test run's JUnit report and coverage here, for the CI system to publish.
            **({REPORTS_ENV: reports} if reports else {}),
        },
        publishes="ref",
    )
    return Job(
        id=BUILD_JOB,
        name=f"{BUILD_JOB} ({stack})",
        stage=Stage.BUILD,
        trigger=Trigger.MAIN,
        # Nothing is pushed unless the integration tests passed.
        needs=(INTEGRATION_JOB,) if integration else (),
        timeout_minutes=45,
        commands=(lint_command(env.image.build), build),
        test_reports=reports,
        environment=stack,
        stack=stack,
        # `up --target` still runs the whole program, whose cluster provider needs the kubeconfig (found under act).
        tools=(Tool.PULUMI, Tool.KUBECONFIG),
        cloud_login=env.registry.kind.cloud,
        serialized=True,
        on_failure=notify_command(stack, Event.BUILD_FAILED, image=False),
    )


def scan_settings(env: EnvironmentConfig | None) -> tuple[str, tuple[str, ...]]:
    """The DB source and the refusing severities of a stack's scans: its ``dockyard:signing.scan``, the program's
    defaults otherwise; the pipeline's scan steps and the program's ``ScannedImage`` use the same."""
    scan = env.signing.scan if env is not None and env.signing is not None else None
    if scan is None:
        return DEFAULT_DB_REPOSITORY, SEVERITIES
    return scan.db_repository, tuple(scan.severities)


def _scan_job(stack: str, env: EnvironmentConfig) -> Job:
    image: dict[str, EnvValue] = {IMAGE_REF_ENV: ImageOutput()}
    db_repository, severities = scan_settings(env)
    commands = [
        Command(
            f"Scan the image ({' or '.join(severities)} stops everything after it)",
            scan_script(
                '--image-src remote "$IMAGE_REF"',
                db_repository=db_repository,
                severities=severities,
                report=SCAN_REPORT,
            ),
            image,
        )
    ]
    keeps = {}
    if env.signing is None:
        # The same findings as the gate's, as the predicate of the vulnerability attestation.
        commands.append(
            Command(
                "Write the vulnerability report",
                f"trivy convert --format cosign-vuln --output {VULNERABILITY_REPORT} {SCAN_REPORT}\n",
                image,
            )
        )
        keeps[VULNERABILITY_ARTIFACT] = VULNERABILITY_REPORT
    return Job(
        id=SCAN_JOB,
        name=SCAN_JOB,
        stage=Stage.SCAN,
        trigger=Trigger.MAIN,
        needs=(BUILD_JOB,),
        timeout_minutes=20,
        commands=tuple(commands),
        environment=stack,
        tools=(Tool.TRIVY,),
        registry=Access.READ,
        keeps=keeps,
    )


def _supply_chain_job(stack: str, env: EnvironmentConfig) -> Job:
    image: dict[str, EnvValue] = {IMAGE_REF_ENV: ImageOutput()}
    commands: tuple[Command, ...] = ()
    keyless = env.signing is None
    if keyless:
        identity = {**image, "IDENTITY": CiFact.SIGNING_IDENTITY, "ISSUER": CiFact.SIGNING_ISSUER}
        commands = (
            Command(
                "SBOM of the image (syft, SPDX JSON)",
                f'syft scan "registry:$IMAGE_REF" -o "spdx-json={SBOM_FILE}"\n',
                image,
            ),
            Command("Sign the image (keyless)", 'cosign sign --yes "$IMAGE_REF"\n', image),
            Command(
                "Attest the SBOM and the vulnerability report",
                f'cosign attest --yes --type spdxjson --predicate {SBOM_FILE} "$IMAGE_REF"\n'
                f'cosign attest --yes --type vuln --predicate {VULNERABILITY_REPORT} "$IMAGE_REF"\n',
                image,
            ),
            Command(
                "Check that they verify as this workflow's",
                'trust=(--certificate-identity "$IDENTITY" --certificate-oidc-issuer "$ISSUER")\n'
                'cosign verify "${trust[@]}" "$IMAGE_REF" > /dev/null\n'
                "for type in spdxjson vuln; do\n"
                '  cosign verify-attestation "${trust[@]}" --type "$type" "$IMAGE_REF" > /dev/null\n'
                "done\n",
                identity,
            ),
        )
    return Job(
        id=SUPPLY_CHAIN_JOB,
        name="SBOM, signature, attestations" if keyless else "provenance (the program signs)",
        stage=Stage.SUPPLY_CHAIN,
        trigger=Trigger.MAIN,
        needs=(BUILD_JOB, SCAN_JOB),
        timeout_minutes=30,
        commands=commands,
        environment=stack,
        tools=(Tool.COSIGN, Tool.SYFT) if keyless else (),
        registry=Access.WRITE,
        oidc=keyless,
        signing=Signing.KEYLESS if keyless else Signing.IN_PROGRAM,
        fetches=(VULNERABILITY_ARTIFACT,) if keyless else (),
    )


def _approval(env: EnvironmentConfig) -> Approval | None:
    """Prod waits for a person (its reviewers); the tiers below run unattended."""
    if env.tier != Tier.PROD:
        return None
    reviewers = tuple(reviewer.user or reviewer.team or str(reviewer.id) for reviewer in env.github.reviewers)
    return Approval(reviewers=reviewers)


def _hold(env: EnvironmentConfig) -> int:
    """Unattended jobs wait out the target's soak (and prod's wait timer); after an approval only the wait timer is
    slept: the time a reviewer took counts toward the soak, which the gate checks when the job runs."""
    return env.github.wait_timer_minutes if _approval(env) is not None else env.hold_minutes


def _rescans(env: EnvironmentConfig) -> tuple[Tool, ...]:
    """trivy where the stack's program scans (``signing.scan``: its ScannedImage, the promotion's re-scan)."""
    return (Tool.TRIVY,) if env.signing is not None and env.signing.scan is not None else ()


def _deploy_job(stack: str, env: EnvironmentConfig) -> Job:
    # A signing stack's ScannedImage and SignedImage run in this update: trivy, syft and cosign must be on PATH.
    tools = (Tool.COSIGN, Tool.SYFT, *_rescans(env)) if env.signing is not None else ()
    return Job(
        id=deploy_job_id(stack),
        name=f"deploy {stack}",
        stage=Stage.DEPLOY,
        trigger=Trigger.MAIN,
        needs=(BUILD_JOB, SCAN_JOB, SUPPLY_CHAIN_JOB),
        timeout_minutes=60,
        guard=_still_this_run(stack, "holds"),
        commands=(
            Command(
                "Deploy everything but the image, which cannot be rebuilt here",
                _with_registry_token(
                    f'pulumi up --yes --stack "$STACK" --policy-pack {POLICY_PACK} --exclude "$IMAGE_URN"\n', env
                ),
                {**_update_env(stack, env, github_admin=True), "IMAGE_URN": image_urn_pattern(stack)},
            ),
            *_chart_commands(stack, env),
            # Verify pulls the image and attests its verification in the registry: the stack's registry password.
            Command(
                "Verify the deployment",
                _with_registry_token('.venv/bin/dockyard verify --stack "$STACK"\n', env),
                _update_env(stack, env, github_admin=False),
            ),
            notify_command(stack, Event.DEPLOYED, image=True),
        ),
        environment=stack,
        stack=stack,
        approval=_approval(env),
        hold_minutes=_hold(env),
        tools=(Tool.PULUMI, Tool.KUBECONFIG, *tools, *_chart_tools(env)),
        cloud_login=env.registry.kind.cloud,
        serialized=True,
        on_failure=notify_command(stack, Event.DEPLOY_FAILED, image=True),
    )


def _promote_job(upstream: str, upstream_job: str, stack: str, env: EnvironmentConfig) -> Job:
    # The target's trust policy checks the digest's signature with cosign before anything is written.
    # The promotion re-scans the digest against the target's DB as it is now (dockyard.releases.gates.scanned).
    tools = (Tool.COSIGN, *_rescans(env)) if env.signing is not None else ()
    release = _release_command(stack, env)
    return Job(
        id=promote_job_id(stack),
        name=f"promote {upstream} → {stack}",
        stage=Stage.PROMOTE,
        trigger=Trigger.MAIN,
        needs=(BUILD_JOB, SCAN_JOB, SUPPLY_CHAIN_JOB, upstream_job),
        timeout_minutes=60,
        guard=_still_this_run(upstream, "serves"),
        commands=(
            Command(
                f"Promote {upstream} → {stack}, verify, undo on failure",
                _with_registry_token('.venv/bin/dockyard promote --from "$SOURCE" --to "$STACK" --yes --verify\n', env),
                {**_update_env(stack, env, github_admin=True), "SOURCE": upstream},
            ),
            *((release,) if release else ()),
            *_chart_commands(stack, env),
            _commit_promotion(stack),
        ),
        environment=stack,
        stack=stack,
        approval=_approval(env),
        hold_minutes=_hold(env),
        tools=(Tool.PULUMI, Tool.KUBECONFIG, *tools, *_chart_tools(env)),
        cloud_login=env.registry.kind.cloud,
        keeps={f"promoted-{stack}": f"Pulumi.{stack}.yaml"},
        serialized=True,
        pushes=True,
        on_failure=notify_command(stack, Event.DEPLOY_FAILED, image=True),
    )


_CI_IDENTITY = (("NAME", "dockyard-ci"), ("EMAIL", "dockyard-ci@users.noreply.invalid"))


def _commit_promotion(stack: str) -> Command:
    """Commit the promoted stack file to the default branch, so the next run starts from what the stack serves.

    Why a commit, not moves that read the served release from the stack: the stack file stays the reviewed record of
    every environment (a plain ``pulumi up`` from a checkout keeps serving what was promoted), and the stale-file gate
    (:func:`dockyard.releases.gates.stale_file`) refuses any move from an older checkout instead of rolling back.
    Rebased onto the branch's tip (the next promotion of the same run, or a newer push, may have landed since).
    """
    return Command(
        f"Commit Pulumi.{stack}.yaml to {DEFAULT_BRANCH}",
        'file="Pulumi.$STACK.yaml"\n'
        'if git diff --quiet -- "$file"; then\n'
        '  echo "$file is unchanged: nothing to commit"\n'
        "  exit 0\n"
        "fi\n"
        'git add -- "$file"\n'
        "git commit --quiet "
        '-m "Promote $STACK to ${IMAGE_REF#*@}" -m "Image: $IMAGE_REF" -m "Pipeline: $PIPELINE_URL"\n'
        "for attempt in 1 2 3; do\n"
        '  if git fetch --quiet "$REMOTE" "$BRANCH" && git rebase --quiet --autostash FETCH_HEAD && '
        'git push --quiet "$REMOTE" "HEAD:refs/heads/$BRANCH"; then\n'
        '    echo "committed $file to $BRANCH: $(git rev-parse --short HEAD)"\n'
        "    exit 0\n"
        "  fi\n"
        "  git rebase --abort 2>/dev/null || true\n"
        "done\n"
        "echo \"::error::could not push the promoted $file to $BRANCH (attempt $attempt); the next run's "
        'promotions refuse its stale file until it is committed"\n'
        "exit 1\n",
        {
            "STACK": stack,
            "BRANCH": DEFAULT_BRANCH,
            IMAGE_REF_ENV: ImageOutput(),
            "PIPELINE_URL": CiFact.PIPELINE_URL,
            "REMOTE": CiFact.PUSH_REMOTE,
            # Both the commit and the rebase (its autostash) write commits: a runner has no git identity of its own.
            **{f"GIT_{role}_{part}": value for role in ("AUTHOR", "COMMITTER") for part, value in _CI_IDENTITY},
        },
    )


def _podman_build(build: BuildConfig) -> tuple[str, dict[str, EnvValue]]:
    """``podman build`` of a stage (``$TARGET``) of the building stack's image, and the environment it reads."""
    args = "".join(f" --build-arg {name}" for name in sorted(build.build_args))
    common: dict[str, EnvValue] = {
        "CONTEXT": build.context,
        "DOCKERFILE": f"{build.context}/{build.dockerfile}",
        # The check job builds for one platform: what the tests and the scan need (the runner's own, first listed).
        "PLATFORM": build.target_platforms[0],
        **dict(sorted(build.build_args.items())),
    }
    return f'podman build --platform "$PLATFORM" --file "$DOCKERFILE"{args} --target "$TARGET"', common


def _check_job(build: BuildConfig, env: EnvironmentConfig) -> Job:
    """A change's check: the test stage and the runtime image built and scanned locally, never pushed.

    This is the change's commit, not the one the delivery chain builds after the merge, so it is no second build of a
    delivered commit.
    """
    podman, common = _podman_build(build)
    db_repository, severities = scan_settings(env)
    commands = [lint_command(build)]
    reports = TEST_REPORTS_DIRECTORY if build.test_target and build.test_reports_target else None
    if reports:
        # Before the test stage: the reports of a failing test are exported too; the tests run once (layer cache).
        commands.append(
            Command(
                f"Export the test reports (target {build.test_reports_target})",
                f'{podman} --output "type=local,dest=$REPORTS_DIR" "$CONTEXT"\n'
                f'python3 {JUNIT_CONVERTER} "$REPORTS_DIR"\n',
                {**common, "TARGET": str(build.test_reports_target), "REPORTS_DIR": reports},
            )
        )
    if build.test_target:
        commands.append(
            Command(
                f"Run the tests (target {build.test_target})",
                f'{podman} "$CONTEXT"\n',
                {**common, "TARGET": build.test_target},
            )
        )
    commands += [
        Command(
            f"Build the image (target {build.target})",
            f'{podman} --tag "$CHECK_IMAGE" "$CONTEXT"\n',
            {**common, "TARGET": build.target, "CHECK_IMAGE": CHECK_IMAGE},
        ),
        Command(
            f"Scan the image ({' or '.join(severities)} fails the check)",
            'podman save --output image.tar "$CHECK_IMAGE"\n'
            + scan_script("--input image.tar", db_repository=db_repository, severities=severities, report=SCAN_REPORT),
            {"CHECK_IMAGE": CHECK_IMAGE},
        ),
    ]
    return Job(
        id=CI_TEST_JOB,
        name=CI_TEST_JOB,
        stage=Stage.TEST,
        trigger=Trigger.CHANGE,
        needs=(),
        timeout_minutes=30,
        commands=tuple(commands),
        tools=(Tool.TRIVY,),
        test_reports=reports,
    )


# --- a merge request's own environment -------------------------------------------------------------------------

#: Every merge request job's first lines: on a branch without one (CircleCI builds every branch) there is nothing to do.
_ONLY_FOR_A_MERGE_REQUEST = 'if [ -z "$MR" ]; then\n  echo "not a merge request: no environment"\n  exit 0\nfi\n'


def _mr_environments(stack: str, env: EnvironmentConfig) -> MergeRequestEnvironments | None:
    """The merge request environments of the building stack (a dev stack), unless it has a trust policy: a merge
    request's digest is signed by no one it trusts, so its update would refuse it (``dockyard env create`` by hand
    with a signed digest still works)."""
    build = env.image.build
    if build is None or env.signing is not None:
        return None
    podman, common = _podman_build(build)
    scope = mr_environment_name(stack)
    mr: dict[str, EnvValue] = {"MR": CiFact.MERGE_REQUEST, "TEMPLATE": stack}
    ttl = parse_ttl(DEFAULT_TTL)
    # The test stage first: on a CI system whose jobs cannot wait on the check (GitHub: another workflow), a failing
    # test still stops the push; where the check ran on the same runner, the layer cache makes it free.
    tests = f'TARGET="{build.test_target}"\n{podman} "$CONTEXT"\n' if build.test_target else ""
    push = Command(
        "Build and push the merge request's image (tag mr-<number>)",
        _ONLY_FOR_A_MERGE_REQUEST
        + tests
        + f'TARGET="{build.target}"\n{podman} --tag "$IMAGE_NAME:mr-$MR" "$CONTEXT"\n'
        + f'podman push --authfile {DOCKER_AUTH_FILE} --digestfile {MR_DIGEST_FILE} "$IMAGE_NAME:mr-$MR"\n',
        {**common, **mr, "IMAGE_NAME": env.registry.image_name},
    )
    create = Command(
        "Deploy it to the merge request's environment (made from the template on its first change)",
        _with_registry_token(
            _ONLY_FOR_A_MERGE_REQUEST
            + '.venv/bin/dockyard env create --from "$TEMPLATE" --mr "$MR" '
            + f'--image "$IMAGE_NAME@$(cat {MR_DIGEST_FILE})" --ttl "$TTL"\n',
            env,
        ),
        {
            **_update_env(stack, env, github_admin=False),
            **mr,
            "IMAGE_NAME": env.registry.image_name,
            "TTL": DEFAULT_TTL,
        },
    )
    stop = Command(
        "Destroy the merge request's environment",
        _with_registry_token(
            _ONLY_FOR_A_MERGE_REQUEST + '.venv/bin/dockyard env destroy --mr "$MR" --from "$TEMPLATE"\n', env
        ),
        {**_update_env(stack, env, github_admin=False), **mr},
    )
    sweep = Command(
        "Destroy every expired merge request environment",
        _with_registry_token(".venv/bin/dockyard env sweep\n", env),
        _update_env(stack, env, github_admin=False),
    )

    def job(job_id: str, trigger: Trigger, commands: tuple[Command, ...]) -> Job:
        return Job(
            id=job_id,
            name=f"{job_id} ({stack})",
            stage=Stage.REVIEW,
            trigger=trigger,
            needs=(CI_TEST_JOB,) if trigger == Trigger.CHANGE else (),
            timeout_minutes=30,
            commands=commands,
            environment=scope,
            tools=(Tool.PULUMI, Tool.KUBECONFIG),
            # Only the merge request's image is pushed by the job's own tools; the program logs in by itself.
            registry=Access.WRITE if trigger == Trigger.CHANGE else None,
            cloud_login=env.registry.kind.cloud,
        )

    return MergeRequestEnvironments(
        template=stack,
        ttl_hours=int(ttl.total_seconds() // 3600),
        create=job(MR_ENV_JOB, Trigger.CHANGE, (push, create)),
        stop=job(MR_ENV_STOP_JOB, Trigger.CHANGE_CLOSED, (stop,)),
        sweep=job(MR_ENV_SWEEP_JOB, Trigger.SCHEDULE, (sweep,)),
    )


# --- the model --------------------------------------------------------------------------------------------------


def derive_pipeline(
    stacks: Mapping[str, EnvironmentConfig], chosen: Collection[str] | None = None, project_dir: Path = Path()
) -> Pipeline:
    """The pipeline of the CI stacks in ``stacks`` (``chosen``, else the GitHub-enabled ones); raises
    :class:`PipelineConfigError` if they form no chain. ``project_dir``: where the building stack's build context
    is (its integration compose file is read from there)."""
    enabled = ci_stacks(stacks, chosen)
    if not enabled:
        raise PipelineConfigError(
            [Problem(None, "github.enabled", "no stack has github.enabled: true", "allowed: at least one")]
        )
    chain = promotions(stacks, chosen)
    builder = building_stack(stacks, chosen)
    assert builder is not None, "promotions() refuses a pipeline without a building stack"
    stack, env = builder
    assert env.image.build is not None
    problems = [
        Problem(
            name,
            f"registry.{target.registry.login_key}",
            f"missing for kind {target.registry.kind}",
            "allowed: the OIDC login CI uses for this registry (no long-lived keys in CI)",
        )
        for name, target in enabled.items()
        if target.registry.kind.cloud and target.registry.cloud_login is None
    ] + [
        Problem(
            name,
            "registry.passwordEnv",
            f"missing for kind {target.registry.kind}",
            "allowed: the variable CI puts the registry token from its OIDC login in, e.g. REGISTRY_TOKEN",
        )
        for name, target in enabled.items()
        if target.registry.kind.cloud and target.registry.password_env is None
    ]
    if problems:
        raise PipelineConfigError(problems)
    integration = env.image.build.integration
    jobs = []
    if integration is not None:
        environment = read_integration(stack, env.image.build.context, integration, project_dir)
        jobs.append(_integration_job(stack, env, environment))
    jobs += [
        _build_job(stack, env, integration=integration is not None),
        _scan_job(stack, env),
        _supply_chain_job(stack, env),
        _deploy_job(stack, env),
    ]
    for upstream, target in chain:
        upstream_job = deploy_job_id(upstream) if upstream == stack else promote_job_id(upstream)
        jobs.append(_promote_job(upstream, upstream_job, target, stacks[target]))
    return Pipeline(
        repository=env.github.repository,
        default_branch=DEFAULT_BRANCH,
        builder=stack,
        build=env.image.build,
        registry=registry_login(env),
        registries={name: registry_login(target) for name, target in enabled.items()},
        delivery=tuple(jobs),
        check=_check_job(env.image.build, env),
        previews=tuple(enabled),
        scan=scan_settings(env),
        # The program checks every digest a stack with a trust policy runs, on every preview too.
        preview_tools=(Tool.COSIGN,) if any(target.signing is not None for target in enabled.values()) else (),
        mr_environments=_mr_environments(stack, env),
    )


# --- reading the committed stack files --------------------------------------------------------------------------


def read_stack_environments(project_dir: Path) -> dict[str, EnvironmentConfig]:
    """Parse the non-secret ``dockyard:`` keys of every ``Pulumi.<stack>.yaml`` in ``project_dir``.

    Secret keys are skipped (their ciphertext is never decrypted here); a stack whose keys do not validate raises
    :class:`dockyard.model.config.ConfigError`.
    """
    environments: dict[str, EnvironmentConfig] = {}
    for stack in stack_names(project_dir):
        environments[stack] = parse_environment(stack, read_stack_file(stack_file(project_dir, stack)))
    return environments


# --- a change's previews ----------------------------------------------------------------------------------------


def preview_command(stack: str | None, registries: Iterable[RegistryLogin] = ()) -> Command:
    """``pulumi preview`` of ``stack`` (a name, or the CI system's matrix expression) with the policy pack; None:
    the CI system sets ``STACK`` itself (a matrix variable or a job parameter). ``registries``: the previewed
    stacks' logins."""
    state = {name: value for name, value in state_env(stack or "").items() if stack or name != "STACK"}
    # The program's trust check reads the signatures from the registry: a stack that reads its password from a
    # variable gets it here too (a stack keeping it as its own secret decrypts it with the passphrase).
    state |= {
        login.password_env: Secret(SECRET_REGISTRY_PASSWORD)
        for login in registries
        if login.password_env and not login.kind.cloud
    }
    return Command(
        "Preview",
        'mkdir -p "$PREVIEWS"\n'
        f'if ! pulumi preview --stack "$STACK" --policy-pack {POLICY_PACK} --json '
        '--event-log "$PREVIEWS/$STACK.events.jsonl" > "$PREVIEWS/$STACK.json"; then\n'
        # --json puts the engine's errors in the file, not on stderr: without this the job's log says nothing (and
        # the file's tail is its steps, not its errors).
        '  echo "::error::pulumi preview of $STACK failed:"\n'
        '  .venv/bin/dockyard pr-summary --errors "$PREVIEWS/$STACK.json" || tail -c 8000 "$PREVIEWS/$STACK.json"\n'
        "  exit 1\n"
        "fi\n",
        # The event log carries the policy pack's violations, which --json leaves out. The CLI only accepts
        # --event-log with PULUMI_DEBUG_COMMANDS set (3.260: "unknown flag" otherwise).
        {**state, "PREVIEWS": PREVIEW_DIRECTORY, "PULUMI_DEBUG_COMMANDS": "true"},
    )


def summary_command(dockyard: str = "dockyard") -> Command:
    """One Markdown summary of every preview, a section per stack, policy violations included."""
    return Command(
        "Summarize",
        f'{dockyard} pr-summary "$PREVIEWS"/*.json > {PREVIEW_SUMMARY}\n',
        {"PREVIEWS": PREVIEW_DIRECTORY},
    )
