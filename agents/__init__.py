"""brickwork.agents."""
