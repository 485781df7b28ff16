"""The rendered prometheus.yml, adapted to pods that come and go.

The template lists the backend replicas and the workers as static targets (the local and
Docker targets know every process's address). In Kubernetes a Deployment's pods have no stable
names, so the ``recon-backend`` job discovers pods instead (``kubernetes_sd_configs``, this
namespace only) and takes ``slot`` and ``version`` from the pod labels, and the
``recon-worker`` job does the same for the workers' metrics port. Both slots are scraped always: the analysis before
a switch needs the idle slot's numbers, and the config then does not change on a switch.

There is no ``node`` job: the template lists only the exporters the catalogue runs on this
target, and node-exporter needs host paths, which the namespace's ``restricted`` Pod Security
level forbids (nodes are the cluster monitoring's job). Every other job and the rule files are
kept as rendered.
"""

from __future__ import annotations

import yaml

HEADER = ("# Rendered by infra/render.py, adapted for Kubernetes by infra/kubernetes/prometheus.py\n"
          "# (pod discovery for the backend and workers; no node job).\n")


def _pod_job(name: str, namespace: str, role: str, port_name: str) -> dict:
    return {
        "job_name": name,
        "metrics_path": "/metrics",
        "kubernetes_sd_configs": [{"role": "pod", "namespaces": {"names": [namespace]}}],
        "relabel_configs": [
            {"source_labels": ["__meta_kubernetes_pod_label_app_kubernetes_io_name"],
             "regex": role, "action": "keep"},
            {"source_labels": ["__meta_kubernetes_pod_container_port_name"], "regex": port_name,
             "action": "keep"},
            {"source_labels": ["__meta_kubernetes_pod_label_recon_slot"], "target_label": "slot"},
            {"source_labels": ["__meta_kubernetes_pod_label_recon_version"], "target_label": "version"},
            {"source_labels": ["__meta_kubernetes_pod_name"], "target_label": "pod"},
        ],
    }


def adapt(rendered: str, namespace: str) -> str:
    doc = yaml.safe_load(rendered)
    jobs = []
    for job in doc["scrape_configs"]:
        if job["job_name"] == "recon-backend":
            jobs.append(_pod_job("recon-backend", namespace, "backend", "http"))
        elif job["job_name"] == "recon-worker":
            jobs.append(_pod_job("recon-worker", namespace, "worker", "metrics"))
        else:
            jobs.append(job)
    doc["scrape_configs"] = jobs
    return HEADER + yaml.safe_dump(doc, sort_keys=False)
