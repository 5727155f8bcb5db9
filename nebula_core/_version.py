"""The package version, in one place: pyproject.toml, `__version__` and the User-Agent read it."""

__version__ = "0.1.0"
