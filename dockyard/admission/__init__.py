"""The cluster enforces each stack's trust policy: an admission webhook that refuses Pods (and the pod templates of
Deployments, ReplicaSets, StatefulSets, DaemonSets, Jobs and CronJobs) whose images are not pinned by digest and
signed as the namespace's stack requires.

One source of truth: a stack's program writes its trust policy (:meth:`~dockyard.model.trust.TrustPolicy.document`)
on its namespace (:mod:`dockyard.admission.namespace`); the webhook reads it from there and checks each image with
the rule the program and the CLI use (:func:`~dockyard.model.trust.check_images`), logged in with the Pod's own
pull Secrets. :mod:`dockyard.admission.review` decides (pure), :mod:`dockyard.admission.server` serves HTTPS,
:mod:`dockyard.admission.registration` is the ``ValidatingWebhookConfiguration`` (prod-tier namespaces fail
closed; others fail open; a ``dockyard.dev/break-glass`` label on a namespace takes it out of admission).

Locally ``scripts/local-cluster.sh`` runs the webhook beside the API server, reached by URL. Real clusters run
sigstore policy-controller (README: "Admission"), which needs an in-cluster Service that the local kwok nodes cannot
serve.
"""
