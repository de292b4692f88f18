"""The worker side: supervisor, consumers and their loops (internal)."""
