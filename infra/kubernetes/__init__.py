"""Production target: the stack in one Kubernetes namespace (pulumi-kubernetes)."""
