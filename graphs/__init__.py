"""brickwork.graphs."""
