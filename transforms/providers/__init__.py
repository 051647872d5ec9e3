"""One module per wire format. Each exposes ``SPECS``: the ProviderSpecs it serves."""
