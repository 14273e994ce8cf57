"""Examples of using extendq from a web backend; each module's docstring says how to run it."""
