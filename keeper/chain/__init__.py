"""The chain edge: the only package that talks JSON-RPC. Everything it returns is plain data."""
