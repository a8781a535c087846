"""AgentCube SDK."""
