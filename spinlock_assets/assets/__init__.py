"""Asset factories, one module per pipeline stage."""
