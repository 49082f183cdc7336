"""What the load scenarios ask, and how their requests are named in Locust's statistics.

A plain module (no Locust, no SKR) shared by the locustfile, the canary and the reports:
the locustfile and the canary import it as a sibling (Locust puts the locustfile's folder
on ``sys.path``; a script's folder is on it), the reports as ``bench.load.scenario``.
"""

from __future__ import annotations

SHED = "shed "  # prefix of a request SKR shed (503 with Retry-After): not an error
DEGRADED = "degraded "  # prefix of an answer the model did not write

# Popular questions people ask the Flask docs, most popular first; drawn Zipf-like.
POPULAR_QUERIES = [
    "register a blueprint", "application factory", "url_for", "jinja templates",
    "request context", "application context", "configuration from environment variables",
    "testing with the test client", "error handlers 404", "sessions", "file uploads",
    "message flashing", "deploy to production", "logging configuration", "signals",
    "class-based views", "return JSON", "static files", "custom CLI commands",
    "async views", "debug mode", "sqlite database connection", "blueprint static folder",
    "before_request", "teardown_appcontext", "secret key", "redirect after login",
    "template inheritance", "gunicorn", "nginx reverse proxy", "werkzeug debugger",
    "flask shell", "environment variables FLASK_APP", "test fixtures pytest",
    "streaming responses", "celery background tasks", "WTForms validation",
    "method views", "escape HTML autoescaping", "security headers",
]  # fmt: skip
POPULAR_QUESTIONS = [
    "How do I register a blueprint?", "What is the application context?",
    "How do I load configuration from a file?", "How do I test a Flask application?",
    "How do I handle a 404 error?", "How do I upload files?", "How do I use sessions?",
    "How do I deploy Flask with gunicorn?", "What does url_for do?",
    "How do templates inherit from a base template?", "How do I flash messages?",
    "How do I write a custom CLI command?", "Can Flask views be async?",
    "How do I connect to SQLite?", "What is the request context?",
    "How should I set the secret key?", "How do I stream a response?",
    "How do I use Celery with Flask?", "How do I log errors in production?",
    "What are signals used for?",
]  # fmt: skip
# Words for long-tail queries: most combinations are asked once.
TAIL_TOPICS = [
    "blueprint", "template", "session", "cookie", "config", "request", "response", "route",
    "view", "error handler", "test client", "cli", "logging", "extension", "signal", "json",
    "redirect", "static file", "upload", "database", "context", "debugger", "middleware",
    "url converter", "form", "header", "stream", "celery", "proxy", "wsgi server",
]  # fmt: skip
TAIL_ASPECTS = [
    "example", "not working", "best practice", "in production", "with pytest", "security",
    "performance", "subdomain", "custom", "default value", "async", "multiple apps",
    "nested", "before first request", "unit test", "decorator", "types", "encoding",
    "timeout", "large", "per request", "global", "thread safety", "migration",
]  # fmt: skip
# Pages of the Flask docs ingesters submit one at a time (ordinary sizes; not api.html).
INGEST_PAGES = [
    "appcontext.html", "async-await.html", "blueprints.html", "cli.html", "config.html",
    "debugging.html", "design.html", "errorhandling.html", "extensiondev.html",
    "extensions.html", "installation.html", "logging.html", "quickstart.html",
    "reqcontext.html", "security.html", "server.html", "shell.html", "signals.html",
    "templating.html", "testing.html", "views.html", "patterns/appfactories.html",
    "patterns/caching.html", "patterns/fileuploads.html", "patterns/flashing.html",
    "patterns/sqlite3.html", "patterns/streaming.html", "deploying/gunicorn.html",
    "tutorial/factory.html", "tutorial/views.html",
]  # fmt: skip
