"""One ComponentResource per concern of the stack, independent of the target.

    infra/
    ├── __main__.py          the Pulumi program: stack name -> spec -> secrets -> build()
    ├── components/          WHAT runs (this package)
    │   ├── stack.py         build(): the program as an importable function
    │   ├── model.py         Workload: a target-neutral description of a process group
    │   ├── platform.py      Platform: what a target must provide
    │   ├── database.py      Database       PostgreSQL primary + streaming replicas
    │   ├── cache.py         Cache          Redis primary + replicas + Sentinels
    │   ├── backend.py       Backend        web + workers per blue/green slot, migrations
    │   ├── proxy.py         Proxy          Nginx (Docker) / Ingress stable + canary (Kubernetes)
    │   ├── observability.py Observability  Prometheus, Alertmanager, exporters, Grafana, Jaeger
    │   ├── backups.py       Backups        schedule, repository volume, logical export
    │   ├── secrets.py       StackSecrets   config secrets, else generated
    │   ├── images.py        pinned third-party images
    │   └── sizing.py        compute for what the spec does not size
    ├── docker/              HOW on one Docker host (staging)
    ├── kubernetes/          HOW in one Kubernetes namespace (production)
    └── policy/              hardening rules: pytest functions and a CrossGuard pack
"""

from infra.components.backend import Backend
from infra.components.backups import Backups
from infra.components.cache import Cache
from infra.components.database import Database
from infra.components.observability import Observability
from infra.components.proxy import Proxy

__all__ = ["Backend", "Backups", "Cache", "Database", "Observability", "Proxy"]
