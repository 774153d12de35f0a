"""Models, attention blocks and datasets that the orchestrator's trials train."""
