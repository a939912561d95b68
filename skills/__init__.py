"""brickwork.skills."""
