"""The server's components: dispatcher, heartbeater, recoverer, forwarder, janitor, health check."""
