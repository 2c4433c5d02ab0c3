"""Cluster plumbing: slot arithmetic, the connectors and the queue router."""
