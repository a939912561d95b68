"""brickwork."""
