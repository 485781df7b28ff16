"""The local target: the whole stack as processes under supervisord on this machine.

    target.py      up / down / status: the orchestration, in dependency order
    processes.py   which processes the spec asks for, their commands and health checks
    supervisor.py  supervisord: its config, start, XML-RPC client
    bootstrap.py   one-time work: initdb, roles, replicas, Redis/Sentinel data dirs
    secrets.py     generated per-stack secrets, kept under <state>/secrets (0700)
    tls.py         a local CA and the server certificate Nginx presents
    privileges.py  the service user: as root, every service runs as it
"""
