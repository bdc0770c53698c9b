"""Arena's built-in plugins, installed as ``arena_plugins`` and registered through entry points."""
