"""Step 01: the ZeroMQ socket patterns, one runnable lesson per module."""
