"""Model adapters: the exportable network core plus pre- and post-processing."""
