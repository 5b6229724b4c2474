"""The lab around the product: a real sshd for the baseline, simulated clusters, the perf test
the schedules run, and what the Docker cluster runs inside its containers.

Nothing in the product imports this package (import-linter checks it in `make lint`).
"""
