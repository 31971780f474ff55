"""ScannedImage: a trivy vulnerability scan of one pushed digest, before it is signed.

The scan reads the image straight from the registry (``--image-src remote``) and the vulnerability DB from an OCI
repository (``--db-repository``: the local registry serves one built offline from fixture records, see
scripts/local-vuln-db.sh), into a fresh cache, so every scan judges against the DB as it is now. Findings of the
gating severities make trivy exit with :data:`FINDINGS_EXIT_CODE`; any other non-zero exit is trivy's own failure
(no DB, registry down, TLS): :class:`ScannerUnavailableError`, never a pass and never "vulnerable".

The result, trivy's JSON report wrapped as a cosign vulnerability predicate, is what :class:`SignedImage` attests
(``cosign attest --type vuln``) on the digest with the stack's key.
"""

# No `from __future__ import annotations`: Pulumi's component provider reads the Args and output annotations
# as live types to infer the schema other languages use.

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Literal, NotRequired, TypedDict, get_args

import pulumi
import pulumi.dynamic as dynamic

from dockyard_components.cosign import CosignError, SigningTools, tool

Severity = Literal["UNKNOWN", "LOW", "MEDIUM", "HIGH", "CRITICAL"]
#: What fails a build or a promotion unless configured otherwise.
SEVERITIES: tuple[Severity, ...] = ("HIGH", "CRITICAL")
ALLOWED_SEVERITIES: tuple[str, ...] = get_args(Severity)
#: trivy's exit code when it finds vulnerabilities of the gating severities; distinct from 1, its own errors.
FINDINGS_EXIT_CODE = 5
#: trivy's own default DB source (online); stacks on this machine name the local registry's.
DEFAULT_DB_REPOSITORY = "mirror.gcr.io/aquasec/trivy-db:2"
#: The cosign predicate type of the attestation (``cosign attest --type vuln``).
VULN_PREDICATE = "vuln"
#: Inputs whose change means a new scan.
RESCAN_KEYS = ("image_ref", "db_repository", "severities", "platforms")


class ScanError(Exception):
    """A scan did not pass; the message is one line that says why."""


class ScannerUnavailableError(ScanError):
    """trivy could not scan (missing, no DB, registry unreachable, unreadable output): nothing is known."""


class VulnerableImageError(ScanError):
    """The image has vulnerabilities of the gating severities."""


@dataclass(frozen=True)
class Finding:
    """One vulnerability of one package, as the refusal names it."""

    vulnerability_id: str
    severity: str
    package: str
    installed: str
    fixed: str

    def line(self) -> str:
        fixed = f"fixed in {self.fixed}" if self.fixed else "no fixed version yet"
        return f"{self.vulnerability_id} ({self.severity}) in {self.package} {self.installed}, {fixed}"


def findings(report: Mapping[str, Any]) -> list[Finding]:
    """Every vulnerability in a trivy JSON report (``--format json``), once per ID and package, sorted."""
    found = {
        Finding(
            vulnerability_id=str(vulnerability.get("VulnerabilityID", "?")),
            severity=str(vulnerability.get("Severity", "UNKNOWN")),
            package=str(vulnerability.get("PkgName", "?")),
            installed=str(vulnerability.get("InstalledVersion", "")),
            fixed=str(vulnerability.get("FixedVersion", "")),
        )
        for result in report.get("Results") or []
        for vulnerability in result.get("Vulnerabilities") or []
    }

    def rank(severity: str) -> int:
        return ALLOWED_SEVERITIES.index(severity) if severity in ALLOWED_SEVERITIES else 0

    return sorted(found, key=lambda f: (-rank(f.severity), f.vulnerability_id, f.package))


def refusal(image_ref: str, found: Sequence[Finding]) -> str:
    """The one line a vulnerable image is refused with."""
    return f"{image_ref} is vulnerable: " + "; ".join(finding.line() for finding in found)


def trivy_settings(*, db_repository: str, severities: Sequence[str]) -> list[str]:
    """The scanner settings every scan uses, the program's, the CLI's and the generated pipelines': what is scanned
    for, what refuses (with :data:`FINDINGS_EXIT_CODE`), which DB; no update checks or telemetry."""
    return [
        "--scanners",
        "vuln",
        "--severity",
        ",".join(severities),
        "--exit-code",
        str(FINDINGS_EXIT_CODE),
        "--db-repository",
        db_repository,
        "--skip-version-check",
        "--disable-telemetry",
        "--no-progress",
    ]


def trivy_image_args(
    image_ref: str,
    *,
    db_repository: str,
    severities: Sequence[str],
    cache_dir: str,
    output: str,
    platform: str | None = None,
) -> list[str]:
    """``trivy image`` of a pushed digest, read from the registry, into a fresh cache; the JSON report to ``output``.
    ``platform``: the image of an index to scan (trivy takes the host's otherwise)."""
    return [
        "image",
        "--image-src",
        "remote",
        *(["--platform", platform] if platform else []),
        *trivy_settings(db_repository=db_repository, severities=severities),
        "--cache-dir",
        cache_dir,
        "--format",
        "json",
        "--output",
        output,
        image_ref,
    ]


def scan_script(target: str, *, db_repository: str, severities: Sequence[str], report: str) -> str:
    """The shell of a pipeline's scan step (``target``: ``"$IMAGE_REF"`` with ``--image-src remote``, or ``--input
    image.tar``), judged as the program judges: exit 0 passes, :data:`FINDINGS_EXIT_CODE` is "vulnerable" (the
    findings as a table), anything else is "scanner unavailable"."""
    settings = " ".join(trivy_settings(db_repository=db_repository, severities=severities))
    gating = " or ".join(severities)
    return (
        "rc=0\n"
        f"trivy image {settings} --format json --output {report} {target} || rc=$?\n"
        'case "$rc" in\n'
        f'  0) echo "no {gating} vulnerability" ;;\n'
        f"  {FINDINGS_EXIT_CODE}) trivy convert --format table {report}\n"
        f'     echo "vulnerable: {gating} findings above (vulnerability, package, fixed version)" >&2; exit 1 ;;\n'
        '  *) echo "scanner unavailable: trivy exited $rc (never read as a pass)" >&2; exit 1 ;;\n'
        "esac\n"
    )


@dataclass(frozen=True)
class ScanResult:
    """A finished scan: trivy's report, what it found, and when."""

    image_ref: str
    db_repository: str
    severities: tuple[str, ...]
    report: Mapping[str, Any]
    started: datetime
    finished: datetime

    @property
    def findings(self) -> list[Finding]:
        return findings(self.report)

    def predicate(self) -> dict[str, Any]:
        """The cosign vulnerability predicate (the shape of ``trivy --format cosign-vuln``) of this scan."""
        version = str((self.report.get("Trivy") or {}).get("Version", "unknown"))
        return {
            "invocation": {
                "parameters": {"severities": list(self.severities), "db_repository": self.db_repository},
                "uri": "",
                "event_id": "",
                "builder.id": "",
            },
            "scanner": {
                "uri": f"pkg:github/aquasecurity/trivy@{version}",
                "version": version,
                "db": {"uri": self.db_repository, "version": ""},
                "result": self.report,
            },
            "metadata": {
                "scanStartedOn": self.started.isoformat().replace("+00:00", "Z"),
                "scanFinishedOn": self.finished.isoformat().replace("+00:00", "Z"),
            },
        }


def same_scan(attested: Mapping[str, Any], predicate: Mapping[str, Any]) -> bool:
    """Two vulnerability predicates say the same thing: the same scanner, DB source and severities, and the same
    results; only when and under which report id they were made differ."""

    def said(p: Mapping[str, Any]) -> tuple[Any, ...]:
        scanner = p.get("scanner") or {}
        return (
            (p.get("invocation") or {}).get("parameters"),
            scanner.get("version"),
            scanner.get("db"),
            (scanner.get("result") or {}).get("Results"),
        )

    return said(attested) == said(predicate)


def scan(
    tools: SigningTools,
    image_ref: str,
    *,
    db_repository: str,
    severities: Sequence[str] = SEVERITIES,
    platforms: Sequence[str] = (),
) -> ScanResult:
    """Scan ``image_ref`` with trivy against the DB in ``db_repository``, logged in through ``tools`` (inside its
    ``with`` block). Returns a clean result, raises :class:`VulnerableImageError` with the findings or
    :class:`ScannerUnavailableError` when trivy itself failed.

    ``platforms`` (an image index's, two or more): each platform's image is scanned (trivy alone would scan only the
    host's) and must pass; the result holds every platform's results, each target named with its platform."""
    if len(platforms) < 2:
        return _scan_one(tools, image_ref, db_repository=db_repository, severities=severities)
    results = [
        _scan_one(tools, image_ref, db_repository=db_repository, severities=severities, platform=platform)
        for platform in platforms
    ]
    merged = [
        {**entry, "Target": f"{entry.get('Target', '')} ({platform})"}
        for platform, result in zip(platforms, results, strict=True)
        for entry in result.report.get("Results") or []
    ]
    return replace(
        results[0], report={**results[0].report, "Results": merged}, finished=max(r.finished for r in results)
    )


def _scan_one(
    tools: SigningTools,
    image_ref: str,
    *,
    db_repository: str,
    severities: Sequence[str],
    platform: str | None = None,
) -> ScanResult:
    try:
        trivy = tool("trivy")
    except CosignError as error:  # not installed
        raise ScannerUnavailableError(f"scanner unavailable: {error}") from None
    cache = tools.directory / "trivy-cache"  # fresh per scan: the DB as the repository holds it now
    output = tools.directory / "trivy-report.json"
    output.unlink(missing_ok=True)
    args = trivy_image_args(
        image_ref,
        db_repository=db_repository,
        severities=severities,
        cache_dir=str(cache),
        output=str(output),
        platform=platform,
    )
    started = datetime.now(UTC)
    try:
        completed = tools.execute("trivy image", [trivy, *args])
    except CosignError as error:  # a timeout
        raise ScannerUnavailableError(f"scanner unavailable: {error}") from None
    finished = datetime.now(UTC)
    result = judge(
        f"{image_ref} ({platform})" if platform else image_ref,
        completed.returncode,
        output.read_text() if output.is_file() else "",
        completed.stderr,
        db_repository=db_repository,
        severities=severities,
        started=started,
        finished=finished,
    )
    return replace(result, image_ref=image_ref)


def judge(
    image_ref: str,
    returncode: int,
    report_text: str,
    stderr: str,
    *,
    db_repository: str,
    severities: Sequence[str],
    started: datetime,
    finished: datetime,
) -> ScanResult:
    """Read trivy's exit code and report: only exit 0 with a report is clean, only exit
    :data:`FINDINGS_EXIT_CODE` with findings in the report is vulnerable; anything else is the scanner's failure."""
    if returncode not in (0, FINDINGS_EXIT_CODE):
        raise ScannerUnavailableError(
            f"scanner unavailable: trivy failed on {image_ref} (exit {returncode}): {_reason(stderr)}"
        )
    try:
        report = json.loads(report_text)
    except ValueError:
        raise ScannerUnavailableError(
            f"scanner unavailable: trivy exited {returncode} on {image_ref} without a readable report"
        ) from None
    if not isinstance(report, dict):
        raise ScannerUnavailableError(f"scanner unavailable: trivy's report on {image_ref} is not a JSON object")
    result = ScanResult(image_ref, db_repository, tuple(severities), report, started, finished)
    found = result.findings
    if returncode == FINDINGS_EXIT_CODE:
        if not found:
            raise ScannerUnavailableError(
                f"scanner unavailable: trivy reported findings on {image_ref} (exit {returncode}) but its report "
                "lists none"
            )
        raise VulnerableImageError(refusal(image_ref, found))
    gating = [finding for finding in found if finding.severity in severities]
    if gating:  # exit 0 with findings of a gating severity: trivy's exit code is not to be trusted
        raise ScannerUnavailableError(
            f"scanner unavailable: trivy exited 0 on {image_ref} but reported {gating[0].line()}"
        )
    return result


def _reason(stderr: str) -> str:
    """trivy's last FATAL or ERROR line with what follows it (its causes), on one line."""
    lines = [line.strip() for line in stderr.strip().splitlines() if line.strip()]
    marked = [n for n, line in enumerate(lines) if "FATAL" in line or "ERROR" in line]
    start = marked[-1] if marked else max(len(lines) - 1, 0)
    return " ".join(lines[start:])[:600] or "no output"


class TrivyScanProvider(dynamic.ResourceProvider):
    """Scans on create and on a change of :data:`RESCAN_KEYS`; a failed scan fails the update."""

    def create(self, props: dict[str, Any]) -> dynamic.CreateResult:
        with SigningTools.from_props(props) as tools:
            result = scan(
                tools,
                props["image_ref"],
                db_repository=props["db_repository"],
                severities=tuple(props["severities"]),
                platforms=tuple(props.get("platforms") or ()),
            )
        outputs = {
            "image_ref": props["image_ref"],
            "db_repository": props["db_repository"],
            "severities": list(props["severities"]),
            "platforms": props.get("platforms"),
            "vulnerability_report": json.dumps(result.predicate(), sort_keys=True),
            "scanned_at": result.finished.isoformat(),
        }
        return dynamic.CreateResult(id_=f"scan-{props['image_ref'].rsplit('@', 1)[-1]}", outs=outputs)

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> dynamic.DiffResult:
        changed = [key for key in RESCAN_KEYS if olds.get(key) != news.get(key)]
        return dynamic.DiffResult(changes=bool(changed), replaces=changed, delete_before_replace=False)

    def delete(self, _id: str, _props: dict[str, Any]) -> None:
        return None


class _TrivyScan(dynamic.Resource):
    image_ref: pulumi.Output[str]
    vulnerability_report: pulumi.Output[str]
    scanned_at: pulumi.Output[str]

    def __init__(self, name: str, props: Mapping[str, Any], opts: pulumi.ResourceOptions) -> None:
        super().__init__(
            TrivyScanProvider(), name, {**props, "vulnerability_report": None, "scanned_at": None}, opts=opts
        )


class ScannedImageArgs(TypedDict):
    image_ref: pulumi.Input[str]
    """Digest-pinned reference of the pushed image (``registry/repo@sha256:...``)."""
    registry_server: pulumi.Input[str]
    """Registry host[:port] to authenticate against (the image's, and the DB's when it is there too)."""
    username: pulumi.Input[str]
    """Registry user that may pull the image."""
    password: NotRequired[pulumi.Input[str]]
    """Registry password, kept a Pulumi secret."""
    ca_file: NotRequired[pulumi.Input[str]]
    """CA bundle (a file path) of a self-hosted registry's TLS; public CAs unless given."""
    db_repository: NotRequired[pulumi.Input[str]]
    """OCI repository of the vulnerability DB (trivy's ``--db-repository``); trivy's public one unless given."""
    severities: NotRequired[pulumi.Input[Sequence[str]]]
    """Severities that fail the scan; HIGH and CRITICAL unless given."""
    platforms: NotRequired[pulumi.Input[Sequence[str]]]
    """The platforms of an image index (two or more): each one's image is scanned and must pass; the image trivy
    resolves (the host's platform) unless given."""


class ScannedImage(pulumi.ComponentResource):
    """A pushed digest that passed a vulnerability scan; the scan's report is what gets attested."""

    image_ref: pulumi.Output[str]
    """The scanned digest: known only once the scan passed, so whatever consumes it runs after the scan."""
    vulnerability_report: pulumi.Output[str]
    """The scan as a cosign vulnerability predicate (JSON), for ``cosign attest --type vuln``."""
    scanned_at: pulumi.Output[str]
    """When the scan finished (ISO 8601)."""

    def __init__(self, name: str, args: ScannedImageArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("dockyard:index:ScannedImage", name, None, opts)
        password = args.get("password")
        # trivy on the pushed digest; credentials reach it through the environment, never its command line.
        scan_resource = _TrivyScan(
            f"{name}-trivy",
            {
                "image_ref": args["image_ref"],
                "registry_server": args["registry_server"],
                "username": args["username"],
                "password": pulumi.Output.secret(password) if password is not None else None,
                "ca_file": args.get("ca_file"),
                "db_repository": args.get("db_repository", DEFAULT_DB_REPOSITORY),
                "severities": args.get("severities", list(SEVERITIES)),
                "platforms": args.get("platforms"),
            },
            pulumi.ResourceOptions(parent=self, additional_secret_outputs=["password"]),
        )
        self.image_ref = scan_resource.image_ref
        self.vulnerability_report = scan_resource.vulnerability_report
        self.scanned_at = scan_resource.scanned_at
        self.register_outputs(
            {"imageRef": self.image_ref, "vulnerabilityReport": self.vulnerability_report, "scannedAt": self.scanned_at}
        )
