"""NodeGraph's desktop editor (PySide6): a client of the engine in `nodegraph`."""
