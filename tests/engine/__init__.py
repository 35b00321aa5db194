"""End-to-end tests of cutover's engine: real cutover processes against the fakes in tests/fakes.

A package, so its test modules (``engine.test_runner``...) never clash with same-named modules in
other test folders.
"""
