"""The test suite; its layout mirrors the package (``test_models/`` for ``hvp_mtl/models``, ...)."""
