"""One ConfigMap through a render-only kubernetes provider: what starting the provider costs on its own."""

import pulumi
import pulumi_kubernetes as k8s

provider = k8s.Provider("render", render_yaml_to_directory="rendered", kubeconfig="")  # not $KUBECONFIG
k8s.core.v1.ConfigMap("floor", data={"a": "b"}, opts=pulumi.ResourceOptions(provider=provider))
