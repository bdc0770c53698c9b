"""Built-in generative models."""
