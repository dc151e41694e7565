"""`labeler review serve RUN_DIR`: a review page of our own, on the run store, keyboard-driven, for several reviewers.

    access   the run's side: which item a reviewer gets next, what the page may show of it, and every answer,
             skip and undo written through labeler.store.serve_tables (one transaction, exactly once per nonce)
    auth     tokens, sessions, the per-session CSRF token and the same-origin rule for every POST
    pages    the Jinja2 templates (autoescaped) and the bundled static files (a fixed set, read once)
    app      the Starlette application: routes, security headers, no path parameter reaching the disk
    server   `serve`: prints the per-reviewer links and runs uvicorn

Starlette, uvicorn and Jinja2 are imported when the command runs, so `labeler --help` stays light.
"""
