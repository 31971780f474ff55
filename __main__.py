"""Dockyard: one stack is one environment. Load its config, compose the components, export what others need."""

from pathlib import Path

import pulumi

from dockyard.program import args as wiring
from dockyard.program import stack_config, trust_check
from dockyard.program.kubernetes import kubernetes_provider
from dockyard_components.github_ci import CiPipeline
from dockyard_components.image import AppImage
from dockyard_components.kubernetes_app import KubernetesApp
from dockyard_components.registry import ContainerRegistry
from dockyard_components.scanner import ScannedImage
from dockyard_components.signing import SignedImage

stack = stack_config.load()
# Before any resource is registered: every digest a Deployment will run passes the stack's trust policy.
trust_policy = trust_check.enforce(stack, Path(__file__).resolve().parent)
# A stack that cannot reach its cluster stops here, before any resource is registered.
kubernetes = kubernetes_provider("kubernetes", stack)

registry = ContainerRegistry("registry", wiring.registry_args(stack))

# Build once: only building stacks (local, dev) create an image; the others deploy a promoted digest.
image = AppImage("image", wiring.image_args(stack, registry)) if stack.env.image.build else None
release = image.ref if image else wiring.promoted_image(stack)
# A stack that requires a scan scans the pushed digest first: a HIGH or CRITICAL finding fails the update here.
scan = stack.env.signing.scan if stack.env.signing else None
scanned = ScannedImage("scanned", wiring.scan_args(stack, registry, image.ref)) if image and scan else None
# What was built, tested and scanned is what is signed: SBOM, signature, SBOM (and scan) attestations of the digest.
signed = (
    SignedImage("signed", wiring.signing_args(stack, registry, image.ref, scanned))
    if image and stack.env.signing
    else None
)

app = KubernetesApp(
    "app",
    # The namespace carries the trust policy: the cluster's admission webhook enforces it on every Pod too.
    wiring.app_args(stack, release, registry, trust_policy),
    # A signing stack deploys its digest only once the signature and SBOM attestation verify.
    opts=pulumi.ResourceOptions(providers=[kubernetes], depends_on=[signed] if signed else None),
)

# GitHub-enabled stacks: Actions secrets, the stack's environment with its approvals, the workflows.
if wiring.wants_ci_pipeline(stack):
    CiPipeline("ci", wiring.pipeline_args(stack, project_dir=Path(__file__).resolve().parent))

pulumi.export("environment", stack.stack)
pulumi.export("image_ref", release)
pulumi.export("namespace", app.namespace)
pulumi.export("url", app.url)
if signed:
    pulumi.export("signature_ref", signed.signature_ref)
    pulumi.export("sbom_attestation_ref", signed.sbom_attestation_ref)
    if scanned:
        pulumi.export("vulnerability_attested", signed.vulnerability_attested)
