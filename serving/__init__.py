"""brickwork.serving."""
