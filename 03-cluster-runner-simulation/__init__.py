"""Step 03: a cluster_runner-compatible ZeroMQ transport, measured against SSH."""
