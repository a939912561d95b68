"""brickwork.tui."""
