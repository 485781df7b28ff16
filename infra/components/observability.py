"""Prometheus (rendered config and rules), Alertmanager, exporters, Grafana and Jaeger.

Grafana is provisioned with a datasource file and a dashboard provider rendered from
templates/grafana/ with the layout's addresses, and the three dashboards (application,
infrastructure, business) generated from infra/dashboards.py at render time (no JSON is checked
in). tests/infra parses their PromQL with promtool; tests/observability runs it on the live stack.
"""

from __future__ import annotations


from infra.components.base import Concern
from infra import images, services
from infra.dashboards import dashboards
from infra.components.model import Edge, File, Port, Probe, Workload
from infra.components.sizing import resources_for
from infra.render import environment

def dashboard_files(spec) -> dict[str, str]:
    """Dashboard JSON by file name (application.json, ...), generated for ``spec``'s stack."""
    return {d.file_name: d.render() for d in dashboards(spec)}


class Observability(Concern):
    TYPE = "recon:components:Observability"

    def grafana_files(self) -> list[File]:
        env = environment()
        ctx = {"spec": self.spec, "layout": self.layout}
        out = [
            File("/etc/recon/grafana/provisioning/datasources/recon.yml",
                 env.get_template("grafana/datasources.yml.j2").render(**ctx)),
            File("/etc/recon/grafana/provisioning/dashboards/recon.yml",
                 env.get_template("grafana/dashboards.yml.j2").render(**ctx)),
        ]
        out += [File(f"/etc/recon/grafana/dashboards/{name}", text) for name, text in dashboard_files(self.spec).items()]
        return out

    def image(self, name: str):
        return self.platform.image(name, parent=self)

    def describe(self) -> list[Workload]:
        s, lay = self.spec, self.layout
        p, am, ex = s.prometheus, s.alertmanager, s.exporters
        out: list[Workload] = []

        def http(path: str, port: int, delay: int = 5) -> Probe:
            return Probe(path=path, port=port, initial_delay_s=delay, period_s=15)

        def authed(path: str, port: int) -> Probe:
            login = f'recon:$(cat {lay.secret("alertmanager-password")})'
            return Probe(command=("sh", "-c", f'curl -fsS -o /dev/null -u "{login}" http://127.0.0.1:{port}{path}'),
                         initial_delay_s=5, period_s=15)

        out.append(Workload(
            name="prometheus", component="observability", role="prometheus", image=self.image("prometheus"),
            members=["prometheus"], kind="stateful", tier=("front", "back", "data"), user=images.UID,
            command=self.command("prometheus"), http_client="curl",
            secret_files={lay.secret("alertmanager-password"): "alertmanager_web"},
            files=[self.conf("prometheus/prometheus.yml"), self.conf("prometheus/rules/recon.rules.yml")],
            ports=[Port("web", p.port, published=True, host_ip="127.0.0.1")],
            liveness=http("/-/healthy", p.port, 10), readiness=http("/-/ready", p.port, 10),
            resources=resources_for(s, "prometheus"), storage_gib=p.storage_gib,
            data_path=lay.data("prometheus"), peers=[Edge("grafana", p.port), Edge("prometheus", p.port)]))
        out.append(Workload(
            name="alertmanager", component="observability", role="alertmanager", image=self.image("alertmanager"),
            members=["alertmanager"], kind="stateless", tier=("back",), user=images.UID,
            command=self.command("alertmanager"), http_client="curl",
            secret_files={lay.secret("alertmanager-web.yml"): "alertmanager_web_config",
                          lay.secret("alertmanager-password"): "alertmanager_web"},
            files=[self.conf("alertmanager/alertmanager.yml")], ports=[Port("web", am.port)],
            # every endpoint asks for basic auth, the health ones too: the probe logs in
            liveness=authed("/-/healthy", am.port), readiness=authed("/-/ready", am.port),
            resources=resources_for(s, "alertmanager"), writable=["/tmp", lay.data("alertmanager")],
            peers=[Edge("prometheus", am.port)]))
        out.append(Workload(
            name="postgres-exporter", component="observability", role="postgres-exporter",
            image=self.image("postgres-exporter"), members=["postgres-exporter"], tier=("back", "data"),
            user=images.UID, command=self.command("postgres-exporter"), env=self.environment("postgres-exporter"),
            secret_files={lay.secret("exporter-password"): "exporter_password"}, http_client="curl",
            ports=[Port("metrics", ex.postgres_port)],
            liveness=http("/", ex.postgres_port), readiness=http("/", ex.postgres_port),
            resources=resources_for(s, "postgres-exporter"), peers=[Edge("prometheus", ex.postgres_port)]))
        out.append(Workload(
            name="redis-exporter", component="observability", role="redis-exporter",
            image=self.image("redis-exporter"), members=["redis-exporter"], tier=("back", "data"),
            user=images.UID, command=self.command("redis-exporter"), env=self.environment("redis-exporter"),
            secret_files={lay.secret("redis-exporter.json"): "redis_exporter_json"}, ports=[Port("metrics", ex.redis_port)],
            liveness=http("/health", ex.redis_port), readiness=http("/health", ex.redis_port),
            resources=resources_for(s, "redis-exporter"), peers=[Edge("prometheus", ex.redis_port)],
            http_client="curl"))
        out.append(Workload(
            name="node-exporter", component="observability", role="node-exporter", image=self.image("node-exporter"),
            members=[], kind="daemon", tier=("back",), user=images.UID, http_client="curl",
            command=[*self.command("node-exporter"), "--path.procfs=/host/proc", "--path.sysfs=/host/sys",
                     "--no-collector.wifi"],
            host_paths={"/proc": "/host/proc", "/sys": "/host/sys"}, ports=[Port("metrics", ex.node_port)],
            # its textfile directory: where `fab backup` publishes the BackupTooOld metrics
            shared=({"node-textfile": lay.data("node-exporter")}
                    if self.platform.backs_up_in_place(self.spec) else {}),
            liveness=http("/", ex.node_port), readiness=http("/", ex.node_port),
            resources=resources_for(s, "node-exporter"), peers=[Edge("prometheus", ex.node_port)],
            exemptions={"host-path": "node metrics are read from the host's /proc and /sys, mounted read-only"}))
        if services.service("nginx-exporter").runs_on(self.platform.target):  # not where the edge is an ingress
            out.append(Workload(
                name="nginx-exporter", component="observability", role="nginx-exporter",
                image=self.image("nginx-exporter"), members=["nginx-exporter"], tier=("front", "back"),
                user=images.UID, command=self.command("nginx-exporter"), http_client="curl",
                ports=[Port("metrics", ex.nginx_port)],
                liveness=http("/metrics", ex.nginx_port), readiness=http("/metrics", ex.nginx_port),
                resources=resources_for(s, "nginx-exporter"), peers=[Edge("prometheus", ex.nginx_port)],
                after=["nginx"]))  # it exits when nginx does not answer at start
        if s.grafana.enabled:
            g = s.grafana
            out.append(Workload(
                name="grafana", component="observability", role="grafana", image=self.image("grafana"),
                members=["grafana"], tier=("front", "back"), user=images.UPSTREAM_UIDS["grafana"],
                env={"GF_SERVER_HTTP_PORT": str(g.port), "GF_PATHS_PROVISIONING": "/etc/recon/grafana/provisioning",
                     "GF_PATHS_DATA": "/var/lib/grafana", "GF_SECURITY_ADMIN_USER": "admin",
                     "GF_USERS_ALLOW_SIGN_UP": "false", "GF_ANALYTICS_REPORTING_ENABLED": "false",
                     "GF_ANALYTICS_CHECK_FOR_UPDATES": "false", "GF_AUTH_ANONYMOUS_ENABLED": "false",
                     "GF_LOG_MODE": "console", "GF_PATHS_PLUGINS": "/var/lib/grafana/plugins"},
                secret_env={"GF_SECURITY_ADMIN_PASSWORD": "grafana_admin_password"},
                files=self.grafana_files(), ports=[Port("web", g.port, published=True, host_ip="127.0.0.1")],
                liveness=http("/api/health", g.port, 10), readiness=http("/api/health", g.port, 10),
                resources=resources_for(s, "grafana"), writable=["/tmp", "/var/lib/grafana"]))
        if s.jaeger.enabled:
            j = s.jaeger
            out.append(Workload(
                name="jaeger", component="observability", role="jaeger", image=self.image("jaeger"),
                members=["jaeger"], tier=("front", "back"), user=images.UPSTREAM_UIDS["jaeger"],
                args=[f"--query.http-server.host-port=:{j.ui_port}",
                      f"--collector.otlp.http.host-port=:{j.otlp_port}", "--memory.max-traces=50000"],
                env={"COLLECTOR_OTLP_ENABLED": "true", "SPAN_STORAGE_TYPE": "memory"},
                ports=[Port("ui", j.ui_port, published=True, host_ip="127.0.0.1"), Port("otlp-http", j.otlp_port)],
                liveness=http("/", j.ui_port), readiness=http("/", j.ui_port),
                resources=resources_for(s, "jaeger"),
                peers=[Edge("backend", j.otlp_port), Edge("worker", j.otlp_port), Edge("grafana", j.ui_port)],
                http_client=None,
                exemptions={"docker-healthcheck": "the all-in-one image has no shell or HTTP client; "
                                                  "Kubernetes probes it over HTTP"}))
        return out

    def outputs(self):
        return {**super().outputs(), "prometheus": str(self.layout.endpoint("prometheus")),
                "alertmanager": str(self.layout.endpoint("alertmanager"))}

