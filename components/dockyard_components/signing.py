"""SignedImage: the SBOM, signature and SBOM attestation of one pushed digest, made with syft and cosign.

Signing happens in the program, on the digest the build pushed (and, where the stack scans, only once the scan of
:mod:`dockyard_components.scanner` passed), so what is built, tested and scanned is what is signed: a
dynamic resource runs ``syft`` (SPDX JSON read straight from the registry), ``cosign sign`` and ``cosign attest``
with the stack's key pair (the private key and its password are Pulumi secrets), each followed by ``cosign verify``
or ``cosign verify-attestation`` with the public key, so an update never records a signature that does not verify.
Its ``diff`` replaces only when the digest or the key changes: a second ``up`` signs nothing again.

A digest that already carries an SBOM attestation signed by the key (another stack or checkout built the same
digest: builds are reproducible) keeps it: the SBOM is read from it, nothing is attested again. Likewise a
vulnerability attestation saying the same as this scan. Each cosign attest appends a layer to the digest's one
``.att`` manifest, which every verification downloads whole: without this, it grew by two SBOM-sized layers per
build of the same sources and every verify of the digest got slower.

Offline (this machine) there is no transparency log: signatures are not uploaded to Rekor and verification
skips it (``--tlog-upload=false``, ``--insecure-ignore-tlog``), which the trust policy states explicitly.
"""

# No `from __future__ import annotations`: Pulumi's component provider reads the Args and output annotations
# as live types to infer the schema other languages use.

import hashlib
import json
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, NotRequired, TypedDict

import pulumi
import pulumi.dynamic as dynamic

from dockyard_components.cosign import CosignError, SigningTools, ToolUnavailableError, attestation_tag, signature_tag
from dockyard_components.scanner import VULN_PREDICATE, same_scan

#: Inputs whose change means a new signature: a new digest, a new key, or a new scan of the digest.
RESIGN_KEYS = ("image_ref", "public_key", "vulnerability_report")


class SignedImageArgs(TypedDict):
    image_ref: pulumi.Input[str]
    """Digest-pinned reference of the pushed image (``registry/repo@sha256:...``)."""
    registry_server: pulumi.Input[str]
    """Registry host[:port] to authenticate against."""
    username: pulumi.Input[str]
    """Registry user that may push signatures and attestations."""
    private_key: pulumi.Input[str]
    """cosign private key (encrypted PEM), a Pulumi secret."""
    key_password: pulumi.Input[str]
    """Password of the private key, a Pulumi secret."""
    public_key: pulumi.Input[str]
    """PEM public key that must verify the new signature and attestation."""
    password: NotRequired[pulumi.Input[str]]
    """Registry password, kept a Pulumi secret."""
    ca_file: NotRequired[pulumi.Input[str]]
    """CA bundle (a file path) of a self-hosted registry's TLS; public CAs unless given."""
    vulnerability_report: NotRequired[pulumi.Input[str]]
    """A passed scan of the digest (``ScannedImage.vulnerability_report``), attested with ``--type vuln``; no
    vulnerability attestation unless given."""


def _sbom_summary(sbom: Mapping[str, Any]) -> dict[str, Any]:
    packages = sbom.get("packages") or []
    creators = (sbom.get("creationInfo") or {}).get("creators") or []
    return {
        "sbom_packages": len(packages),
        "sbom_go_modules": sorted(
            {
                str(ref.get("referenceLocator", "")).removeprefix("pkg:golang/").split("@")[0]
                for package in packages
                for ref in package.get("externalRefs") or []
                if str(ref.get("referenceLocator", "")).startswith("pkg:golang/")
            }
        ),
        "sbom_creators": list(creators),
    }


#: Writes of one digest's signatures and attestations by concurrent runs (two pipelines, two stacks built from the
#: same commit) are read-modify-write on one registry tag: a write can drop another's. Each is verified, and redone.
WRITE_ATTEMPTS = 3


def _written(write: Callable[[], object], verify: Callable[[], object]) -> None:
    """``write`` then ``verify``; when the check misses the write (a concurrent run replaced the tag), write again."""
    for attempt in range(1, WRITE_ATTEMPTS + 1):
        write()
        try:
            verify()
            return
        except ToolUnavailableError:
            raise
        except CosignError:
            if attempt == WRITE_ATTEMPTS:
                raise


def sign_and_attest(props: Mapping[str, Any], tools: SigningTools) -> dict[str, Any]:
    """SBOM → attest → verify it, beside sign → verify it, for ``props['image_ref']``; then, given a passed scan's
    ``vulnerability_report``, its ``vuln`` attestation → verify it. Returns the outputs (never a secret). The signature
    does not need the SBOM, so it is made while syft (the slow step) reads the image."""
    image = props["image_ref"]

    def sign_and_verify() -> None:
        _written(lambda: tools.sign(image), lambda: tools.verify(image))

    with ThreadPoolExecutor(max_workers=1) as pool:
        signed = pool.submit(sign_and_verify)
        # An SBOM statement our key already signed on the digest is kept; else syft reads the image meanwhile.
        kept = tools.attested(image, predicate_type="spdxjson")
        sbom = dict(kept[0]["predicate"]) if kept else tools.sbom(image)
        signed.result()  # nothing is attested with a key that could not sign
    if not kept:
        _written(
            lambda: tools.attest(image, sbom, predicate_type="spdxjson"),
            lambda: tools.verify_attestation(image, predicate_type="spdxjson"),
        )
    report = props.get("vulnerability_report")
    if report:
        scan = json.loads(report)
        if not any(same_scan(s["predicate"], scan) for s in tools.attested(image, predicate_type=VULN_PREDICATE)):
            _written(
                lambda: tools.attest(image, scan, predicate_type=VULN_PREDICATE),
                lambda: tools.verify_attestation(image, predicate_type=VULN_PREDICATE),
            )
    canonical = json.dumps(sbom, sort_keys=True).encode()
    return {
        "image_ref": image,
        "public_key": props["public_key"],
        "signature_ref": signature_tag(image),
        "sbom_attestation_ref": attestation_tag(image),
        "sbom_sha256": hashlib.sha256(canonical).hexdigest(),
        "vulnerability_report": report,
        "vulnerability_attested": bool(report),
        **_sbom_summary(sbom),
    }


class CosignSigningProvider(dynamic.ResourceProvider):
    """Signs on create and on a change of :data:`RESIGN_KEYS`; deleting leaves the signatures with the image."""

    def create(self, props: dict[str, Any]) -> dynamic.CreateResult:
        try:
            with SigningTools.from_props(props) as tools:
                outputs = sign_and_attest(props, tools)
        except CosignError as error:
            raise CosignError(f"signing {props['image_ref']}: {error}") from None
        return dynamic.CreateResult(id_=outputs["signature_ref"], outs=outputs)

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> dynamic.DiffResult:
        changed = [key for key in RESIGN_KEYS if olds.get(key) != news.get(key)]
        return dynamic.DiffResult(changes=bool(changed), replaces=changed, delete_before_replace=False)

    def delete(self, _id: str, _props: dict[str, Any]) -> None:
        # A promoted or rolled-back stack may still serve the digest: its signature stays verifiable.
        return None


class _CosignSigning(dynamic.Resource):
    signature_ref: pulumi.Output[str]
    sbom_attestation_ref: pulumi.Output[str]
    sbom_packages: pulumi.Output[int]
    sbom_go_modules: pulumi.Output[list[str]]
    vulnerability_attested: pulumi.Output[bool]

    def __init__(self, name: str, props: Mapping[str, Any], opts: pulumi.ResourceOptions) -> None:
        outputs = dict.fromkeys(
            (
                "signature_ref",
                "sbom_attestation_ref",
                "sbom_sha256",
                "sbom_packages",
                "sbom_go_modules",
                "sbom_creators",
                "vulnerability_attested",
            )
        )
        super().__init__(CosignSigningProvider(), name, {**props, **outputs}, opts=opts)


class SignedImage(pulumi.ComponentResource):
    """The signature and the SBOM attestation of one pushed digest, verified with the stack's public key."""

    signature_ref: pulumi.Output[str]
    """Where cosign stored the signature (``repo:sha256-<hex>.sig``)."""
    sbom_attestation_ref: pulumi.Output[str]
    """Where cosign stored the SPDX SBOM attestation (``repo:sha256-<hex>.att``)."""
    sbom_packages: pulumi.Output[int]
    """How many packages the SBOM lists."""
    vulnerability_attested: pulumi.Output[bool]
    """Whether a passed scan is attested on the digest (``cosign attest --type vuln``)."""

    def __init__(self, name: str, args: SignedImageArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("dockyard:index:SignedImage", name, None, opts)
        # syft + cosign on the pushed digest; credentials and the key reach the tools through the environment.
        signing = _CosignSigning(
            f"{name}-cosign",
            {
                "image_ref": args["image_ref"],
                "registry_server": args["registry_server"],
                "username": args["username"],
                "password": pulumi.Output.secret(password) if (password := args.get("password")) is not None else None,
                "ca_file": args.get("ca_file"),
                "private_key": pulumi.Output.secret(args["private_key"]),
                "key_password": pulumi.Output.secret(args["key_password"]),
                "public_key": args["public_key"],
                "vulnerability_report": args.get("vulnerability_report"),
            },
            pulumi.ResourceOptions(parent=self, additional_secret_outputs=["password", "private_key", "key_password"]),
        )
        self.signature_ref = signing.signature_ref
        self.sbom_attestation_ref = signing.sbom_attestation_ref
        self.sbom_packages = signing.sbom_packages
        self.vulnerability_attested = signing.vulnerability_attested
        self.register_outputs(
            {
                "signatureRef": self.signature_ref,
                "sbomAttestationRef": self.sbom_attestation_ref,
                "sbomPackages": self.sbom_packages,
                "vulnerabilityAttested": self.vulnerability_attested,
            }
        )
