"""`dspy-top serve`: a headless agent exporting every local instrumented job to Prometheus and OpenTelemetry.

`watch` is its only link to the viewer's collector; the exporters read plain `JobView`s from it.
Neither dspy, litellm nor Textual is imported here (tests/test_import_hygiene.py).
"""
