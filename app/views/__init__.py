"""The explorer's pages, one module each with a ``render(ctx)`` function."""
