"""Test harnesses: code the tests and benchmarks use, never the shipped service or tools.

    testing/
    ├── servers.py      throwaway PostgreSQL clusters, Redis and Sentinel servers on loopback
    ├── pulumi_mocks.py Pulumi's mock runtime: run a program offline, capture its resources
    ├── stack_summary.py ``python -m testing.stack_summary``: resources per type, from a mock run
    └── loadgen.py      bounded HTTP load against the stack (release drills and benchmarks)

Nothing under app/, infra/ or ops/ imports this package (tests/unit/test_structure.py).
"""
