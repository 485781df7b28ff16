"""The edge: Nginx with the rendered config (Docker), or Ingress objects (Kubernetes).

On Docker, Nginx runs ``nginx/nginx.conf`` exactly as the local target does: TLS, rate
limits, security headers, both slots' upstreams and the canary ``split_clients``.

On Kubernetes, the cluster's ingress-nginx controller is the edge and the split is done the
way Argo Rollouts does it with Nginx: a stable Ingress to the active Service and a canary
Ingress (``canary-weight``) to the preview Service. The rendered nginx.conf encodes the
active slot, so running it in the cluster would make a switch change a ConfigMap too;
instead the platform maps the same spec keys (body size, rate limits, TLS) to Ingress
annotations.
"""

from __future__ import annotations

import pulumi

from infra.components.base import Concern
from infra import images
from infra.components.model import Edge, Port, Probe, Workload
from infra.components.sizing import resources_for


class Proxy(Concern):
    TYPE = "recon:components:Proxy"

    def describe(self) -> list[Workload]:
        return []

    def nginx(self) -> Workload:
        n = self.spec.nginx
        ports = [Port("http", n.http_port, published=True, host_ip=n.publish_address)]
        secret_files = {}
        if n.tls:
            ports.append(Port("https", n.https_port, published=True, host_ip=n.publish_address))
            secret_files = {"/etc/recon/tls/server.crt": "tls_cert", "/etc/recon/tls/server.key": "tls_key"}
        ports.append(Port("status", n.status_port))  # stub_status, for the nginx exporter only
        probe = Probe(path="/health", port=n.http_port, initial_delay_s=2, period_s=10)
        return Workload(
            name="nginx", component="proxy", role="nginx", image=self.platform.image("nginx", parent=self),
            members=["nginx"], kind="stateless", tier=("front", "back"), command=self.command("nginx"),
            files=[self.conf("nginx/nginx.conf")], secret_files=secret_files, ports=ports,
            liveness=probe, readiness=probe, resources=resources_for(self.spec, "nginx"),
            user=images.UID, http_client="curl",
            peers=[Edge("ingress", n.http_port), Edge("nginx-exporter", n.status_port)])

    def extra(self) -> list[pulumi.Resource]:
        self.edge_workload = self.nginx()
        return self.platform.edge(self.edge_workload, parent=self)

    def outputs(self):
        return {"endpoints": self.platform.endpoints()}
