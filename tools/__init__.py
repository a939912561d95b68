"""brickwork.tools."""
