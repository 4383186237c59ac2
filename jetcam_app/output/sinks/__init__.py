"""Where annotated frames go: one file per sink."""
